"""What produced an output: the code version, the package versions, the resolved config."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from aesthetic_mtl import __version__
from aesthetic_mtl.files import write_json


def code_version() -> str:
    """`git describe` of the checkout the code runs from, or the package version outside git."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"],
                             cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"v{__version__}"


def provenance(config: dict | None = None) -> dict:
    """What produced an output: code version, package versions, and the resolved config."""
    versions = {}
    for pkg in ("torch", "torchvision", "numpy", "pandas", "scipy", "pillow", "snakemake"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {
        "code_version": code_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "config": config or {},
    }


def write_provenance(path: str | os.PathLike, config: dict | None) -> None:
    """`provenance(config)` as JSON next to an output (results/metrics.provenance.json)."""
    write_json(path, provenance(config))


def provenance_header(prov: dict | None = None) -> str:
    """Lines starting with '# ' that open every rule log: code version, Python, package versions."""
    prov = prov or provenance()
    packages = ", ".join(f"{name} {version}" for name, version in prov["packages"].items())
    return (f"# aesthetic-mtl {prov['code_version']} | python {prov['python']} | {prov['platform']}\n"
            f"# packages: {packages}\n")
