"""README's "Scoring new photos" commands, run as written on a finished run's results: the tiny workflow's
(the demo's layout; its folder and backbone put in for the demo's `results/demo` and `efficientnet_lite0`)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

pytestmark = pytest.mark.slow


def scoring_blocks() -> tuple[list[str], str]:
    """The shell commands (continuation lines joined, comments dropped) and the Python block of the section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Scoring new photos"):]
    section = section[:section.index("\n## ", 1)]
    shell, python = re.findall(r"```\n(.*?)```", section, re.S)[0], re.findall(r"```python\n(.*?)```", section, re.S)[0]
    joined = shell.replace("\\\n", " ")
    commands = [line.split("#")[0].strip() for line in joined.splitlines() if line.split("#")[0].strip()]
    return commands, python


def test_readme_scoring_commands_run_on_a_finished_run(tiny_run, tmp_path):
    commands, python = scoring_blocks()
    assert [c.split()[1] for c in commands] == ["models", "predict", "export", "info"]
    work = tmp_path / "user"
    (work / "photos").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("photos/a.jpg", "photos/b.png", "more.jpg", "photo1.jpg", "photo2.jpg"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(work / name)
    script = Path(sys.executable).with_name("aesthetic-mtl")
    for command in commands:
        argv = [a.replace("results/demo", str(tiny_run / "results")).replace("efficientnet_lite0", "vgg16")
                for a in shlex.split(command)]
        proc = subprocess.run([str(script), *argv[1:]], cwd=work, capture_output=True, text=True)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
    assert (work / "scores.csv").read_text().splitlines()[0].startswith("image,score,")
    assert (work / "model.safetensors").is_file()
    proc = subprocess.run([sys.executable, "-c", python], cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "photo2.jpg" in proc.stdout and "score" in proc.stdout
