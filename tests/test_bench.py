"""The benchmark code (bench/) runs end to end at a tiny size. No timing assertions: only that every
benchmark runs, writes its report section, and that the fast path and the direct implementation agree
(bench/run.py exits non-zero when their SRCC differ by more than 0.01)."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

RUN = REPO / "bench" / "run.py"
GPU = REPO / "bench" / "gpu.py"
CACHE_SECTION = "<!-- cache_dtype:begin -->\n## 6. Feature cache: float16 against float32\n\nfigures\n<!-- cache_dtype:end -->\n"


def _run(script: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)
    assert proc.returncode == 0, f"{script.name} {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


def test_quick_benchmarks_run_and_write_the_report(tmp_path):
    out = tmp_path / "results.md"
    committed = REPO / "bench" / "results.md"
    before = committed.stat().st_mtime_ns if committed.exists() else None
    proc = _run(RUN, "--quick", "--threads", "1", "--workdir", str(tmp_path / "work"), "--out", str(out))
    text = out.read_text()
    for section in ("## 1. The whole experiment design", "| (a) fast path | (b) direct |", "## Reproduce"):
        assert section in text, section
    assert "bench/run.py --quick" in text  # the exact command is recorded
    assert "AMD" in text or "Intel" in text or "CPU" in text
    assert "## 1. The whole experiment design" in proc.stdout  # each section on stdout as it finishes
    after = committed.stat().st_mtime_ns if committed.exists() else None
    assert before == after  # a quick run never overwrites the committed figures


@pytest.mark.slow
def test_gpu_grid_benchmark_runs_through_snakemake_on_the_cpu(tmp_path):
    """`make bench-gpu` at a tiny size: the grid through snakemake, then one model per job."""
    out = tmp_path / "gpu.md"
    proc = _run(GPU, "--quick", "--workdir", str(tmp_path / "work"), "--out", str(out), timeout=1800)
    text = out.read_text()
    assert text in proc.stdout
    for phase in ("decode (image cache)", "feature cache", "training + predictions", "of which test predictions",
                  "tables, figures, summary", "**whole grid**", "## What chunking buys"):
        assert phase in text, phase
    assert "metrics.tsv of the two runs: identical" in text
    assert "default chunks (2 jobs)" in text  # one per dataset (one seed)
    assert int(re.search(r"one model per job \((\d+) jobs\)", text).group(1)) == 5  # AADB 3 settings, EVA 2
    assert "Peak GPU memory (largest over the GPU jobs): not measured (no CUDA device)" in text
    # the precision run: on the CPU autocast is off in both, so SRCC cannot move
    assert "## Precision: float32 (TF32 allowed) vs bf16 autocast" in text
    assert re.search(r"largest \*\*0\.0000\*\*", text)


@pytest.mark.slow
def test_snakemake_benchmark_runs_and_keeps_section_6(tmp_path):
    out = tmp_path / "results.md"
    out.write_text("# old\n\n" + CACHE_SECTION + "\n## Reproduce\n")
    _run(RUN, "--quick", "--only", "design", "--only", "snakemake", "--threads", "1",
         "--workdir", str(tmp_path / "work"), "--out", str(out), timeout=1800)
    text = out.read_text()
    assert "## 1b. The same design through the real `snakemake`" in text
    assert "**snakemake / in-process** (goal <= 1.5x)" in text
    assert text.count(CACHE_SECTION) == 1 and text.index("## 1b.") < text.index("## 6.") < text.index("## Reproduce")


@pytest.mark.parametrize("script, heading, figure", [
    ("cache_dtype", "## 6. Feature cache: float16 against float32",
     "Largest SRCC difference over every target, seed and trunk"),
    ("interpolation", "## 7. Resize filter: Keras' interpolations against bicubic_fast",
     "Mean over the targets (stage 2): `bicubic_fast`"),
    ("predict", "## 8. Scoring photos: `predict` against its bound", "**predict / bound = "),
])
def test_section_benchmarks_run_and_keep_one_section(tmp_path, script, heading, figure):
    proc = _run(REPO / "bench" / f"{script}.py", "--quick", "--workdir", str(tmp_path / "work"))
    assert heading in proc.stdout and figure in proc.stdout
    sys.path.insert(0, str(REPO / "bench"))
    try:
        own = importlib.import_module(script).SECTION
    finally:
        sys.path.remove(str(REPO / "bench"))
    section = proc.stdout[proc.stdout.index(own.begin):proc.stdout.index(own.end)] + own.end + "\n"
    report = tmp_path / "results.md"
    report.write_text("# Benchmarks\n\n## 5. x\n\ntext\n\n## Reproduce\n\ncmd\n")
    for _ in range(2):
        own.write(section, report)
    text = report.read_text()
    assert text.count(own.begin) == 1 and text.index(heading[:5]) < text.index("## Reproduce")
    assert own.read(report) == section
