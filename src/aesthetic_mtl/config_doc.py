"""config/README.md, generated from the JSON schema so that the documented keys cannot drift.

Every schema property carries a `description`; this module walks the schema and writes one table per
top-level section (key, type and allowed values, whether it is required, what it means). A map whose
keys are free (datasets by name, targets, files) shows its key as the value schema's `title`
(`<dataset>`). `python -m aesthetic_mtl.config_doc` (or `make config-doc`) rewrites the file;
`--check` exits 1 when the file and the schema disagree, and tests/test_config_doc.py does the same.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator

from aesthetic_mtl.config import SCHEMA_NAME, load_schema
from aesthetic_mtl.files import atomic_path

README_PATH = Path("config") / "README.md"
"""Where `make config-doc` writes, relative to the repository it runs in."""

INTRO = """\
# Configuration

<!-- Generated from src/aesthetic_mtl/config.schema.yaml by `make config-doc`
     (python -m aesthetic_mtl.config_doc); edit the schema's descriptions, not this file. -->

The workflow reads `config.yaml` (the paper's setting) at the top of the repository; overlays given
with `--configfile` replace only the keys they name, nested keys included:

```
snakemake --cores 4 --resources gpu=1                                  # the paper, real AADB and EVA
snakemake --cores 4 --configfile config/demo.yaml                      # synthetic demo (make demo)
snakemake --cores 2 --configfile .test/config/config.yaml              # the tiny CI test (a complete config)
snakemake --cores 4 --configfile config/photos.yaml                    # e.g. your own rated photos
```

Deployed as a module (`snakedeploy deploy-workflow`, docs/deploy.md), the workflow reads your
`config/config.yaml` alone, so it must be complete: start from a copy of `config.yaml` (the paper) or of
`.test/config/config.yaml` (tiny, synthetic).

A value that is not the paper's carries a `# ours:` comment in `config.yaml`. Before any job runs,
the merged config is checked against the schema and against the rules a schema cannot express (a
subset naming an unknown target, a cross-dataset pair of unknown datasets, ...); a mistake stops the
run with one line naming the key. [docs/own-photos.md](../docs/own-photos.md) has a complete example
of the `table` format (your own rated photos).

In the tables, `<...>` stands for a name you choose, `*` marks a required key, and `a | b` lists the
allowed values.
"""


def _type(node: dict) -> str:
    """Type and constraints of one schema node in a few words."""
    kind = node.get("type", "")
    kinds = [k for k in (kind if isinstance(kind, list) else [kind]) if k]
    if "enum" in node:
        text = " \\| ".join(f"`{_escape(v)}`" for v in node["enum"])
    elif kinds == ["array"]:
        items = node.get("items", {})
        inner = _type(items) if items else "value"
        sizes = (node.get("minItems"), node.get("maxItems"))
        text = f"list of {inner}"
        if sizes[0] is not None and sizes[0] == sizes[1]:
            text = f"{sizes[0]} x {inner}"
        elif sizes[0]:
            text += f", at least {sizes[0]}"
    elif kinds == ["object"] and "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
        text = "map"
    else:
        text = " or ".join(kinds) or "any"
    bounds = []
    if "minimum" in node:
        bounds.append(f">= {node['minimum']}")
    if "exclusiveMinimum" in node:
        bounds.append(f"> {node['exclusiveMinimum']}")
    if "maximum" in node:
        bounds.append(f"<= {node['maximum']}")
    if bounds:
        text += " " + ", ".join(bounds)
    return text


def _escape(value) -> str:
    """A value as Markdown table text (tabs shown as `\\t`, pipes escaped)."""
    return str(value).replace("\t", "\\t").replace("|", "\\|")


def iter_keys(node: dict, prefix: str) -> Iterator[tuple[str, dict, bool]]:
    """(dotted key, schema node, required) for every key under `node`, depth first, schema order."""
    required = set(node.get("required", []))
    for name, child in (node.get("properties") or {}).items():
        key = f"{prefix}.{name}" if prefix else name
        yield key, child, name in required
        yield from iter_keys(child, key)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and ("properties" in extra or "additionalProperties" in extra
                                    or "description" in extra):
        key = f"{prefix}.{extra.get('title', '<name>')}"
        yield key, extra, False
        yield from iter_keys(extra, key)


def undocumented(schema: dict) -> list[str]:
    """Keys of the schema without a description (each one must have one)."""
    return [key for key, node, _ in iter_keys(schema, "") if not str(node.get("description", "")).strip()]


def render(schema: dict) -> str:
    """The Markdown of config/README.md for `schema`."""
    lines = [INTRO]
    required = set(schema.get("required", []))
    for name, node in schema["properties"].items():
        star = "*" if name in required else ""
        lines += [f"## `{name}`{star}", "", node.get("description", "").strip(), ""]
        rows = list(iter_keys(node, name))
        if not rows:
            lines += [f"Type: {_type(node)}.", ""]
            continue
        lines += ["| key | type | description |", "| --- | --- | --- |"]
        for key, child, req in rows:
            text = " ".join(str(child.get("description", "")).split()).replace("|", "\\|")
            lines.append(f"| `{key}`{'*' if req else ''} | {_type(child)} | {text} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write config/README.md from the schema, or with --check report whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    parser.add_argument("--out", type=Path, default=README_PATH)
    args = parser.parse_args(argv)
    schema = load_schema()
    missing = undocumented(schema)
    if missing:
        print(f"{SCHEMA_NAME}: keys without a description: {', '.join(missing)}", file=sys.stderr)
        return 1
    text = render(schema)
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date with {SCHEMA_NAME}; run `make config-doc`", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
