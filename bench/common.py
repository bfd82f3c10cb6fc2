"""Shared helpers of the benchmarks: machine description, repeated timing, CPU sharing, tables.

Nothing here imports torch at module level, so the memory benchmark's children start small.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
if str(SRC) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(SRC))


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

    @property
    def min(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def max(self) -> float:
        return max(self.values) if self.values else float("nan")

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        """'median (min-max, n=k)'."""
        if not self.values:
            return "n/a"
        if len(self.values) == 1:
            return f"{self.median:.{digits}f}{unit} (n=1)"
        return (f"{self.median:.{digits}f}{unit} ({self.min:.{digits}f}-{self.max:.{digits}f}, "
                f"n={len(self.values)})")


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as t: ...` then `t[0]` is the elapsed wall time in seconds."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)


@dataclass
class Ratio:
    """numerator / denominator of two repeated measurements: ratio of the medians, and the extreme
    ratios (min / max and max / min) as its range."""

    median: float
    low: float
    high: float

    def fmt(self, digits: int = 1, unit: str = "x") -> str:
        return f"{self.median:.{digits}f}{unit} ({self.low:.{digits}f}-{self.high:.{digits}f})"


def ratio(numerator: Timing, denominator: Timing) -> Ratio:
    return Ratio(numerator.median / denominator.median, numerator.min / denominator.max,
                 numerator.max / denominator.min)


# --------------------------------------------------------------------------------------------------
# the machine and how busy it was
# --------------------------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The SIMD flags that matter for fp32 / bf16 convolutions."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                keep = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "fma")
                return [f for f in keep if f in flags]
    except OSError:
        pass
    return []


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
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = int(line.split()[1]) / 2**20
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "logical_cpus": os.cpu_count(),
        "flags": " ".join(cpu_flags()),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": threads,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "snakemake": sm,
        "cuda": torch.cuda.is_available(),
        "platform": platform.platform(),
    }


def _busy_jiffies() -> int:
    """Busy CPU time of the whole machine (all cores) in clock ticks, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return user + nice + system + irq + softirq + steal


def _own_cpu_seconds() -> float:
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


class ShareMeter:
    """How much CPU other processes used while the benchmark ran (machine busy time minus ours).

    Children are counted as ours once they have been waited for (subprocess.run does that).
    """

    def __init__(self) -> None:
        self.available = Path("/proc/stat").exists()
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.start_wall = time.perf_counter()
        self.start_busy = _busy_jiffies() if self.available else 0
        self.start_own = _own_cpu_seconds()
        self.load_start = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3

    def report(self) -> dict:
        wall = time.perf_counter() - self.start_wall
        own = _own_cpu_seconds() - self.start_own
        out = {"wall_s": wall, "own_cpu_s": own, "load_start": self.load_start,
               "load_end": os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3}
        if self.available:
            busy = (_busy_jiffies() - self.start_busy) / self.tick
            out["machine_cpu_s"] = busy
            out["others_cpu_s"] = max(0.0, busy - own)
            out["others_cores"] = out["others_cpu_s"] / wall if wall > 0 else float("nan")
        return out


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------

def command_line() -> str:
    """The exact command that produced the results, with paths relative to the repository."""
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(REPO) if exe.is_absolute() and REPO in exe.parents else exe
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(REPO)
    return shlex.join([str(exe), str(script), *sys.argv[1:]])


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Plain-text table on stdout, one row per measured quantity."""
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n== {title}")
    for j, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def interleaved(runs: dict[str, Callable[[int], float]], repeats: int | dict[str, int],
                log: Callable[[str], object] = print) -> dict[str, Timing]:
    """Run each callable `repeats` times (or `repeats[name]` times), alternating between them (a, b, a, b,
    ...), so that load from other processes hits every variant alike. Each callable gets the repeat number
    and returns seconds."""
    counts = repeats if isinstance(repeats, dict) else {name: repeats for name in runs}
    out = {name: Timing() for name in runs}
    for r in range(max(counts.values(), default=0)):
        for name, fn in runs.items():
            if r >= counts.get(name, 0):
                continue
            value = fn(r)
            out[name].add(value)
            log(f"  [{name}] repeat {r + 1}/{counts[name]}: {value:.3f}")
    return out
