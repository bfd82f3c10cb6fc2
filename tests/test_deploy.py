"""The workflow as others get it: its license."""

from __future__ import annotations

from conftest import REPO


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


# ---------------------------------------------------------------------------------------- license

def test_the_license_is_the_mit_license_pyproject_names():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 The aesthetic-mtl authors\n")
    assert "Permission is hereby granted, free of charge" in text
    assert _pyproject()["license"] == "MIT" and _pyproject()["license-files"] == ["LICENSE"]


