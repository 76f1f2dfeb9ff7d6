"""What every benchmark section shares: interleaved timing, statistics, tables, the machine."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Row",
    "Section",
    "interleaved",
    "median",
    "percentile",
    "machine_info",
    "format_machine",
    "format_section",
    "load_average",
    "rss_bytes",
    "peak_rss_bytes",
    "MiB",
]

MiB = 1024 * 1024


@dataclass
class Row:
    """One line of a section's table: our figure against the reference's, and the target."""

    name: str
    ours: str
    reference: str = ""
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None  # None: informational, no target

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("pass" if self.ok else "FAIL")


@dataclass
class Section:
    """A benchmark section's result: its table, free-form notes and machine-readable numbers."""

    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    seconds: float = 0.0
    load_avg: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at start and end

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for row, out in zip(self.rows, data["rows"]):
            out["verdict"] = row.verdict
        return data


def interleaved(fns: dict[str, Callable[[], object]], runs: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, timed round-robin.

    Other processes share this CPU; timing the variants in turn spreads their
    load over every variant alike instead of penalising whichever ran during it.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float] | np.ndarray) -> float:
    return float(statistics.median(values)) if len(values) else float("nan")


def percentile(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not on every platform
        return float("nan")


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if platform.system() == "Darwin" else peak * 1024  # Linux reports KiB


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cpu_capability": _cpu_capability(torch),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "cuda": None,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    try:
        import av

        info["pyav"] = av.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["cuda"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1), "version": torch.version.cuda}
    return info


def _cpu_capability(torch: Any) -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # older torch
        return "unknown"


def format_machine(info: dict[str, Any]) -> str:
    cuda = info["cuda"]
    gpu = f"{cuda['name']} ({cuda['memory_gib']} GiB, CUDA {cuda['version']})" if cuda else "none"
    load = info.get("load_average")
    return "\n".join(
        [
            f"machine: {info['cpu']}, {info['cores']} cores, torch CPU capability {info['cpu_capability']}",
            f"software: torch {info['torch']} ({info['torch_threads']} threads), transformers {info.get('transformers', '?')}, "
            f"PyAV {info.get('pyav', '?')}, Python {info['python']}, {info['platform']}",
            f"GPU: {gpu}",
            f"load average at start: {', '.join(f'{x:.2f}' for x in load) if load else 'n/a'} (1, 5, 15 min)",
        ]
    )


def format_section(section: Section) -> str:
    """A plain-text table, readable in a terminal and pasteable into Markdown as a code block."""
    head = f"== {section.title} "
    lines = [head + "=" * max(3, 78 - len(head))]
    if section.skipped:
        lines.append(f"skipped: {section.skipped}")
        return "\n".join(lines)
    header = ("", "ours", "reference", "ratio", "target", "")
    cells = [header] + [
        (r.name, r.ours, r.reference, "" if r.ratio is None else f"{r.ratio:.3f}", r.target, r.verdict) for r in section.rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    for n, c in enumerate(cells):
        lines.append(
            "  ".join(
                (c[i].ljust(widths[i]) if i == 0 else c[i].rjust(widths[i]) if i in (1, 2, 3) else c[i].ljust(widths[i]))
                for i in range(len(header))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for note in section.notes:
        lines.append(f"  * {note}")
    lines.append(
        f"  ({section.seconds:.1f} s; load average {section.load_avg[0]:.2f} at start, {section.load_avg[1]:.2f} at end)"
    )
    return "\n".join(lines)
