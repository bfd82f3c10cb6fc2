"""Plumbing shared by the benchmarks: repeated timing, the machine and its load, markdown, synthetic
data prepared with the pipeline's own functions, and `snakemake` run in a copy of the repository."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("TQDM_DISABLE", "1")  # the package's progress bars would interleave with the output


def quiet(*_args, **_kwargs) -> None:
    """A `log` callable that drops the package's progress messages."""


# --------------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------------

@dataclass
class Timing:
    """Repeated measurements of one quantity (seconds, or any unit)."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(float(value))

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        """'median (min-max, n=k)'."""
        if not self.values:
            return "n/a"
        if len(self.values) == 1:
            return f"{self.median:.{digits}f}{unit} (n=1)"
        return (f"{self.median:.{digits}f}{unit} ({min(self.values):.{digits}f}-{max(self.values):.{digits}f}, "
                f"n={len(self.values)})")


@dataclass
class Ratio:
    """numerator / denominator of two repeated measurements: the ratio of the medians, and the extreme
    ratios (min / max and max / min) as its range."""

    median: float
    low: float
    high: float

    def fmt(self, digits: int = 1, unit: str = "x") -> str:
        return f"{self.median:.{digits}f}{unit} ({self.low:.{digits}f}-{self.high:.{digits}f})"


def ratio(numerator: Timing, denominator: Timing) -> Ratio:
    a, b = numerator.values, denominator.values
    return Ratio(numerator.median / denominator.median, min(a) / max(b), max(a) / min(b))


def interleaved(runs: dict[str, Callable[[int], float]], counts: dict[str, int],
                log: Callable[[str], object] = print) -> dict[str, Timing]:
    """Run each callable `counts[name]` times, alternating between them (a, b, a, b, ...), so that load
    from other processes hits every variant alike. Each callable gets the repeat number, returns seconds."""
    out = {name: Timing() for name in runs}
    for r in range(max(counts.values(), default=0)):
        for name, fn in runs.items():
            if r < counts.get(name, 0):
                out[name].add(fn(r))
                log(f"  [{name}] repeat {r + 1}/{counts[name]}: {out[name].values[-1]:.3f}")
    return out


# --------------------------------------------------------------------------------------------------
# the machine and how busy it was
# --------------------------------------------------------------------------------------------------

def _cpuinfo(key: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return ""


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine(threads: int) -> dict:
    """What the results were measured on."""
    import numpy
    import PIL
    import torch

    try:
        import snakemake
        sm = snakemake.__version__
    except Exception:  # noqa: BLE001 - optional
        sm = "not installed"
    mem_gib = float("nan")
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_gib = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                           if line.startswith("MemTotal")).split()[1]) / 2**20
    simd = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "fma")
    return {"cpu": _cpuinfo("model name") or platform.processor() or "unknown",
            "flags": " ".join(f for f in simd if f in _cpuinfo("flags").split()),
            "cores": usable_cores(), "logical_cpus": os.cpu_count(), "memory_gib": round(mem_gib, 1),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": threads,
            "numpy": numpy.__version__, "pillow": PIL.__version__, "snakemake": sm,
            "cuda": torch.cuda.is_available(), "platform": platform.platform()}


def _busy_seconds() -> float:
    """Busy CPU time of the whole machine (all cores) from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


class ShareMeter:
    """How much CPU other processes used while the benchmark ran (machine busy time minus ours; children
    count as ours once waited for)."""

    def __init__(self) -> None:
        self.available = Path("/proc/stat").exists()
        self.start = (time.perf_counter(), _busy_seconds() if self.available else 0.0, _own_cpu_seconds())
        self.load_start = os.getloadavg()

    def report(self) -> dict:
        wall, own = time.perf_counter() - self.start[0], _own_cpu_seconds() - self.start[2]
        out = {"wall_s": wall, "load_start": self.load_start, "load_end": os.getloadavg(),
               "others_cores": float("nan")}
        if self.available and wall > 0:
            out["others_cores"] = max(0.0, _busy_seconds() - self.start[1] - own) / wall
        return out


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------

def command_line() -> str:
    """The exact command that produced the results, with paths relative to the repository."""
    exe, script = Path(sys.executable), Path(sys.argv[0]).resolve()
    if exe.is_absolute() and REPO in exe.parents:
        exe = exe.relative_to(REPO)
    with contextlib.suppress(ValueError):
        script = script.relative_to(REPO)
    return shlex.join([str(exe), str(script), *sys.argv[1:]])


def source_revision() -> str:
    """The commit whose pipeline (src/, workflow/, the Snakefile and the configs) was measured."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()

    changed = git("status", "--porcelain", "--untracked-files=no", "--", "src", "workflow", "Snakefile", "config.yaml",
                  "config", "pyproject.toml")
    return (git("rev-parse", "--short", "HEAD") or "unknown") + (" with uncommitted changes" if changed else "")


RESULTS = REPO / "bench" / "results.md"


class ReportSection:
    """A benchmark's own section of bench/results.md, between two markers: its script replaces it in place and
    `bench/run.py` keeps it when it rewrites the rest of the file."""

    def __init__(self, name: str) -> None:
        self.begin, self.end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        self.pattern = re.compile(re.escape(self.begin) + ".*?" + re.escape(self.end) + "\n?", re.S)

    def read(self, path: Path = RESULTS) -> str | None:
        """The section, markers included, or None."""
        match = self.pattern.search(Path(path).read_text() if Path(path).exists() else "")
        return match.group(0) if match else None

    def publish(self, section: str, write: bool) -> int:
        """A script's ending: print the section and, with --write, put it in bench/results.md; exit status 0."""
        print(section)
        if write:
            self.write(section)
            print(f"wrote {RESULTS}")
        return 0

    def write(self, section: str, path: Path = RESULTS) -> None:
        """Replace the section (or add it before "## Reproduce"), leaving the rest of the file untouched."""
        text = path.read_text() if path.exists() else ""
        if self.pattern.search(text):
            text = self.pattern.sub(lambda _m: section, text)
        else:
            marker = "\n## Reproduce"
            text = text.replace(marker, "\n" + section + marker, 1) if marker in text else text + "\n" + section
        path.write_text(text)


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# data and workflow
# --------------------------------------------------------------------------------------------------

def synthetic(aadb: dict, eva: dict, image_size: int) -> dict:
    """The `datasets` overlay of synthetic AADB and EVA releases (photos of `image_size` px)."""
    return {name: {"source": "synthetic", "synthetic": {**release, "image_size": image_size}}
            for name, release in (("AADB", aadb), ("EVA", eva))}


def weights_file(cfg: dict) -> Path | None:
    """The trunk weights the workflow would use: packaged ImageNet weights, a file, or none."""
    from aesthetic_mtl.nn.backbones import weights_source

    spec = cfg["backbone"]["weights"]
    if spec == "none":
        return None
    if spec == "imagenet":
        kind, where = weights_source(cfg["backbone"]["name"])
        if kind != "file":
            raise SystemExit(f"{cfg['backbone']['name']}: ImageNet weights need a download ({where}); "
                             "the benchmarks run offline, use a backbone with packaged weights or weights none")
        return Path(where)
    return Path(spec)


def prepare_dataset(ds: dict, res: Path, results: Path, log: Callable = quiet) -> Path:
    """Release -> extract -> parse -> split -> scale_labels with the pipeline's functions; the scaled labels."""
    from aesthetic_mtl.data.formats import get_format
    from aesthetic_mtl.data.release import extract, obtain_archives, parse_labels
    from aesthetic_mtl.data.scaling import write_scaled_labels
    from aesthetic_mtl.data.splits import write_splits

    obtain_archives(ds, get_format(ds["format"]).required_files(ds), res / "archives.sha256.json", download={},
                    log=log)
    extract(ds, res / "archives", res / "raw", log=log)
    parse_labels(ds, res / "raw", results / "labels.tsv", on_bad_image="error", log=log)
    write_splits(results / "labels.tsv", ds["split"], results / "splits.tsv", results / "split_report.json",
                 dataset=results.name, log=log)
    write_scaled_labels(results / "labels.tsv", results / "splits.tsv", ds["attributes"], results / "scaled_labels.tsv",
                        log=log)
    return results / "scaled_labels.tsv"


def aadb_design(backbone: str, weights: str, size: int, *, n_train: int, n_test: int, image_size: int,
                seed: int = 31) -> dict:
    """The paper config's AADB entry and training settings on a synthetic release (photos of `image_size` px)."""
    from aesthetic_mtl.config import deep_update, load_config

    return deep_update(load_config(REPO / "config.yaml"), {
        "datasets": {"AADB": {"source": "synthetic", "synthetic": {
            "n_train": n_train, "n_validation": max(8, n_train // 8), "n_test": n_test, "overlap": 0,
            "image_size": image_size, "seed": seed}}},
        "images": {"size": size},
        "backbone": {"name": backbone, "weights": weights},
    })


def train_and_score(cfg: dict, cache: Path, scaled_labels: Path, targets: list[str], seed: int) -> dict:
    """Both stages of the multi-task model from one feature cache, the pipeline's way;
    {(stage, target): test SRCC}."""
    import torch

    from aesthetic_mtl.files import read_tsv
    from aesthetic_mtl.nn.feature_cache import open_feature_cache
    from aesthetic_mtl.nn.model import build_model
    from aesthetic_mtl.nn.train import fit, predict, split_rows
    from aesthetic_mtl.report.metrics import srcc
    from aesthetic_mtl.specs import HeadSpec, StageSpec

    prefix, pooled, index = open_feature_cache(cache)
    table = read_tsv(scaled_labels)
    train, val, test = (split_rows(table, index, s, targets) for s in ("train", "validation", "test"))
    torch.manual_seed(seed)
    model = build_model(cfg["backbone"]["name"], targets, weights_file(cfg), HeadSpec.from_config(cfg["head"]))
    out = {}
    for stage, inputs, forward in (("stage1", pooled, model.forward_from_pooled),
                                   ("stage2", prefix, model.forward_from_prefix)):
        fit(model, forward, inputs, train, val, StageSpec.from_config(cfg["training"], stage), seed=seed,
            params=model.set_stage(stage), loss_weights=[1.0] * len(targets),
            bf16_cuda=cfg["training"]["bf16_autocast_cuda"], log=quiet, desc=stage)
        pred = predict(forward, inputs, test.rows, bf16_cuda=cfg["training"]["bf16_autocast_cuda"])
        for j, t in enumerate(targets):
            out[(stage, t)] = srcc(pred[:, j], test.y[:, j])
    return out


COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "results", "resources", "logs", "benchmarks", ".snakemake",
                                     "__pycache__", "*.egg-info", ".pytest_cache", "bench")


class Workflow:
    """The repository copied to `repo`, run with `snakemake TARGETS OPTIONS --configfile bench_config.yaml`."""

    def __init__(self, repo: Path, overlay: dict, options: Sequence[str]) -> None:
        self.repo, self.options = repo, [*options, "--configfile", "bench_config.yaml"]
        shutil.rmtree(repo, ignore_errors=True)
        shutil.copytree(REPO, repo, ignore=COPY_IGNORE)
        self.configure(overlay)

    def configure(self, overlay: dict) -> None:
        (self.repo / "bench_config.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))

    def command(self, *targets: str) -> str:
        return shlex.join(["snakemake", *targets, *self.options])

    def run(self, *targets: str, log: Path | None = None) -> float:
        """Wall seconds of one run; its output goes to `log` (default: snakemake.log in the copy)."""
        log = log or self.repo / "snakemake.log"
        t0 = time.perf_counter()
        with log.open("w") as out:
            proc = subprocess.run([sys.executable, "-m", "snakemake", *targets, *self.options], cwd=self.repo,
                                  stdout=out, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"{self.command(*targets)} failed (exit {proc.returncode}); log {log}:\n{tail}")
        return wall
