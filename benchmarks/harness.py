"""Timing and reporting: interleaved repeats, paired ratios, the tables of ``run.py``."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pytest_flops.tables import aligned

Step = Callable[[], object]


@dataclass(frozen=True)
class Target:
    what: str
    value: float
    limit: float
    unit: str

    @property
    def met(self) -> bool:
        return self.value <= self.limit


@dataclass
class Results:
    timings: list[tuple[str, dict[str, float]]] = field(
        default_factory=list
    )  # (step, {variant: s})
    counts: list[tuple[str, dict[str, int]]] = field(
        default_factory=list
    )  # (step, {counter: FLOPs})
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Timings:
    """Seconds of each variant per repeat; repeat i of every variant ran back to back."""

    samples: dict[str, list[float]]

    def medians(self) -> dict[str, float]:
        return {name: statistics.median(times) for name, times in self.samples.items()}

    def ratio(self, slow: str, fast: str) -> float:
        """The median over repeats of ``slow``'s time over ``fast``'s in that repeat.

        Load from other processes comes and goes; it hits both sides of one
        repeat's pair alike, where a ratio of two medians could pair a loaded
        stretch with a quiet one.
        """
        pairs = zip(self.samples[slow], self.samples[fast], strict=True)
        return statistics.median(a / b for a, b in pairs)

    def difference(self, slow: str, fast: str) -> float:
        """The median over repeats of ``slow - fast`` (see :meth:`ratio`)."""
        pairs = zip(self.samples[slow], self.samples[fast], strict=True)
        return statistics.median(a - b for a, b in pairs)


def time_variants(variants: dict[str, Step], repeats: int, *, warm_up: bool = True) -> Timings:
    """Time each variant ``repeats`` times, interleaved in a rotating order."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    if warm_up:
        for name in names:
            variants[name]()
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            start = time.perf_counter()
            variants[name]()
            samples[name].append(time.perf_counter() - start)
    return Timings(samples)


def under(mode: Callable[[], contextlib.AbstractContextManager[object]], step: Step) -> Step:
    def run() -> None:
        with mode():
            step()

    return run


def report(results: Results) -> str:
    parts = [machine()]
    by_variants: dict[tuple[str, ...], list[tuple[str, dict[str, float]]]] = {}
    for step, times in results.timings:
        by_variants.setdefault(tuple(times), []).append((step, times))
    for variants, rows in by_variants.items():
        parts.append(
            "Median seconds\n"
            + table(
                ["step", *variants],
                [[step, *(f"{times[v]:.4f}" for v in variants)] for step, times in rows],
            )
        )
    if results.counts:
        counters = list(dict.fromkeys(c for _, counts in results.counts for c in counts))
        parts.append(
            "FLOPs counted (fvcore and ptflops report multiply-adds: doubled here)\n"
            + table(
                ["step", *counters],
                [
                    [step, *(f"{counts[c]:,}" if c in counts else "" for c in counters)]
                    for step, counts in results.counts
                ],
            )
        )
    parts.append(
        "Targets\n"
        + table(
            ["target", "measured", "limit", "met"],
            [
                [
                    t.what,
                    f"{t.value:.2f} {t.unit}",
                    f"{t.limit:g} {t.unit}",
                    "yes" if t.met else "NO",
                ]
                for t in results.targets
            ],
        )
    )
    if results.notes:
        parts.append("Notes\n" + "\n".join(f"- {note}" for note in results.notes))
    return "\n\n".join(parts)


def table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        aligned([header, *rows], right=[False] + [True] * (len(header) - 1), rule=True)
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}, "
        f"{platform.system()}"
    )


def load_average() -> str:
    """Other processes' load skews timings: the report shows it."""
    return " / ".join(f"{load:.1f}" for load in os.getloadavg())
