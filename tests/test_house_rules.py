"""The house rules that make the package's floors mean something (ARCHITECTURE.md), checked on the source.

1. `report/` never imports torch: reports read what the training job recorded (parameters.json, predictions),
   they never build networks.
2. Defaults live in the schema only: outside `config.py` and `specs.py` no code reads a config key with a
   fallback value (`.get("<schema key>", default)`); validation has filled every default in.
3. `nn/` receives typed specs (`specs.py`), never the config's sections.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from aesthetic_mtl.config import load_schema

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "aesthetic_mtl"
CONFIG_READERS = {"config.py", "specs.py", "config_doc.py"}
SECTIONS = set(load_schema()["properties"])

# (file, function): why reading keys with a fallback there is not reading the config
NOT_THE_CONFIG = {
    ("nn/checkpoint.py", "_card_of_format_1"): "a format-1 checkpoint's stored keys; what it predates takes the "
                                              "values it was trained with",
    ("nn/checkpoint.py", "_overall_of_format_1"): "the dataset config a format-1 checkpoint stored",
    ("nn/checkpoint.py", "from_plain"): "a checkpoint's card, not the config",
    ("data/download.py", "what_arrived"): "the fields of a Git LFS pointer file",
    ("data/download.py", "handle_starttag"): "HTML attributes of a download page",
}


def _modules(folder: Path = PACKAGE):
    for path in sorted(folder.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _schema_keys(node: object) -> set[str]:
    """Every key name the schema declares, at any depth (if/then branches included)."""
    keys: set[str] = set()
    if isinstance(node, dict):
        keys |= set(node.get("properties") or {})
        for child in node.values():
            keys |= _schema_keys(child)
    elif isinstance(node, list):
        for child in node:
            keys |= _schema_keys(child)
    return keys


def _string_reads(tree: ast.AST):
    """(enclosing function, line, key, has fallback) of each `x["key"]` and `x.get("key"[, fallback])`."""
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                yield function.name, node.lineno, node.slice.value, False
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                yield function.name, node.lineno, node.args[0].value, len(node.args) > 1


def test_report_imports_no_torch():
    imported = []
    for name, tree in _modules(PACKAGE / "report"):
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            imported += [f"{name}:{node.lineno} {n}" for n in names
                         if n.split(".")[0] in ("torch", "torchvision") or n.startswith("aesthetic_mtl.nn")]
    assert not imported, imported
    # and nothing they import brings torch in (a lazy import above would not show in the AST of report/)
    code = ("import importlib, pkgutil, sys, aesthetic_mtl.report as r\n"
            "for m in pkgutil.iter_modules(r.__path__): importlib.import_module('aesthetic_mtl.report.' + m.name)\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_only_the_config_module_and_specs_restate_defaults():
    keys = _schema_keys(load_schema())
    found = [f"{name}:{line} {function}: .get({key!r}, <default>)"
             for name, tree in _modules() if Path(name).name not in CONFIG_READERS
             for function, line, key, fallback in _string_reads(tree)
             if fallback and key in keys and (name, function) not in NOT_THE_CONFIG]
    assert not found, "defaults belong to config.schema.yaml (validation fills them in):\n" + "\n".join(found)


def test_nn_receives_typed_specs_not_config_sections():
    found = [f"{name}:{line} {function}: reads the config section {key!r}"
             for name, tree in _modules(PACKAGE / "nn")
             for function, line, key, _ in _string_reads(tree)
             if key in SECTIONS and (name, function) not in NOT_THE_CONFIG]
    assert not found, "nn/ takes specs (aesthetic_mtl.specs), not config dicts:\n" + "\n".join(found)


def test_the_rules_can_fail():
    """The checks above see what they look for (a rule that cannot fail checks nothing)."""
    tree = ast.parse("def f(cfg, images):\n    return cfg.get('dropout', 0.35), cfg['training'], images.get('size')\n")
    reads = list(_string_reads(tree))
    assert ("f", 2, "dropout", True) in reads and ("f", 2, "training", False) in reads
    assert ("f", 2, "size", False) in reads
    assert {"dropout", "size", "interpolation", "halve_every_steps"} <= _schema_keys(load_schema())
    assert "training" in SECTIONS
