"""Every pytest-flops speed target, measured in one run: ``python benchmarks/run.py``.

Each figure is the median of ``--repeats`` timings. The variants of one step
(bare, under torch's FlopCounterMode, under ours, ...) run interleaved, in a
rotating order, so that load from other processes hits them alike; every
ratio compares figures of this one run. Needs the ``bench`` extra for the
peer tools: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.flop_counter
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for examples/, when run as a script

from examples.llama import LLAMA_7B, LLAMA_70B, Llama, LlamaConfig  # noqa: E402
from examples.models import TinyGPT  # noqa: E402
from pytest_flops import FlopCounterMode, count  # noqa: E402

SEQ_LEN = 2048
PLUGIN_TESTS = 200

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
    timings: list[tuple[str, dict[str, float]]]  # (step, {variant: median seconds})
    counts: list[tuple[str, dict[str, int]]]  # (step, {counter: FLOPs})
    targets: list[Target]
    notes: list[str]


# -- timing ------------------------------------------------------------------------


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


def time_variants(variants: dict[str, Step], repeats: int) -> Timings:
    """Time each variant ``repeats`` times, interleaved, after one warm-up call each."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
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


def paired_difference(slow: list[float], fast: list[float]) -> float:
    """The median over repeats of ``slow - fast`` (see :meth:`Timings.ratio`)."""
    return statistics.median(a - b for a, b in zip(slow, fast, strict=True))


def under(mode: Callable[[], contextlib.AbstractContextManager[object]], step: Step) -> Step:
    def run() -> None:
        with mode():
            step()

    return run


def ours() -> FlopCounterMode:
    return FlopCounterMode(display=False)


def torchs() -> torch.utils.flop_counter.FlopCounterMode:
    return torch.utils.flop_counter.FlopCounterMode(display=False)


def counted(mode: Callable[[], Any], step: Step) -> int:
    with mode() as counter:
        step()
    return counter.get_total_flops()


# -- models and steps -----------------------------------------------------------------


def llama_train_step(model: Llama, tokens: torch.Tensor) -> None:
    """Forward, cross-entropy and backward of a Llama on ``tokens``."""
    logits = model(tokens)
    F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    model.zero_grad(set_to_none=True)


def meta_llama(config: LlamaConfig) -> tuple[Llama, torch.Tensor]:
    with torch.device("meta"):
        return Llama(config), torch.zeros(1, SEQ_LEN, dtype=torch.long)


def train_step(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> Step:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad()
        out = model(inputs)
        F.cross_entropy(out.flatten(0, -2), targets.flatten()).backward()
        optimizer.step()

    return step


def resnet18_batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    return resnet18(), torch.randn(8, 3, 224, 224), torch.randint(0, 1000, (8,))


def gpt_batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = TinyGPT(vocab_size=8192, dim=256, num_heads=4, num_layers=4, max_seq_len=256)
    tokens = torch.randint(0, 8192, (8, 256))
    return model, tokens, tokens


# -- sections ----------------------------------------------------------------------------


def bench_meta(results: Results, repeats: int) -> None:
    from pytest_flops.meta_as_cpu import cpu_kernels_on_meta

    # Counting sends meta attention to the CPU's fused kernel, as a CPU run
    # would take it; bare meta runs the math decomposition instead. The target
    # compares with a bare run on the same kernels.
    model, tokens = meta_llama(LLAMA_7B)
    step_7b = functools.partial(llama_train_step, model, tokens)
    timings = time_variants(
        {
            "bare": step_7b,
            "bare, CPU kernels": under(cpu_kernels_on_meta, step_7b),
            "torch": under(torchs, step_7b),
            "ours": under(ours, step_7b),
            "ours, count()": functools.partial(count, llama_train_step, model, tokens),
        },
        repeats,
    )
    times = timings.medians()
    results.timings.append(("Llama 7B fwd+bwd, meta, seq 2048", times))
    same_kernels = "bare, CPU kernels"
    results.targets += [
        Target(
            "meta 7B: ours / bare on the same kernels",
            timings.ratio("ours", same_kernels),
            1.5,
            "x",
        ),
        Target("meta 7B: ours / torch", timings.ratio("ours", "torch"), 1.0, "x"),
    ]
    results.notes += [
        f"meta 7B: torch / bare = {timings.ratio('torch', 'bare'):.2f}x",
        f"meta 7B: ours / bare (math attention) = {timings.ratio('ours', 'bare'):.2f}x",
        f"meta 7B: count() / bare on the same kernels = "
        f"{timings.ratio('ours, count()', same_kernels):.2f}x",
    ]
    results.counts.append(
        ("Llama 7B fwd+bwd", {"ours": counted(ours, step_7b), "torch": counted(torchs, step_7b)})
    )
    del model, step_7b
    gc.collect()

    step_70b = functools.partial(llama_train_step, *meta_llama(LLAMA_70B))
    times_70b = time_variants(
        {"bare": step_70b, "ours": under(ours, step_70b)}, max(3, repeats // 2)
    ).medians()
    results.timings.append(("Llama 70B fwd+bwd, meta, seq 2048", times_70b))
    per_layer_7b = times["ours"] / LLAMA_7B.n_layers
    per_layer_70b = times_70b["ours"] / LLAMA_70B.n_layers
    results.targets.append(
        Target("meta 70B / 7B time per layer (ours)", per_layer_70b / per_layer_7b, 2.0, "x")
    )
    del step_70b
    gc.collect()

    child = subprocess.run(
        [sys.executable, __file__, "--peak-rss-child"],
        capture_output=True,
        text=True,
        check=True,
    )
    results.targets.append(Target("meta 7B peak RSS (ours)", float(child.stdout), 1024, "MB"))


def peak_rss_child() -> None:
    """Count one 7B step in a fresh process and print its peak RSS in MB."""
    counted(ours, functools.partial(llama_train_step, *meta_llama(LLAMA_7B)))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def bench_real(results: Results, repeats: int) -> None:
    for short, name, batch in [
        ("resnet18", "resnet18 train step, batch 8", resnet18_batch),
        ("GPT", "GPT train step (4x256, seq 256, batch 8)", gpt_batch),
    ]:
        step = train_step(*batch())
        timings = time_variants(
            {"bare": step, "torch": under(torchs, step), "ours": under(ours, step)}, repeats
        )
        results.timings.append((name, timings.medians()))
        results.targets += [
            Target(f"{short} train: ours / bare", timings.ratio("ours", "bare"), 1.2, "x"),
            Target(f"{short} train: ours / torch", timings.ratio("ours", "torch"), 1.0, "x"),
        ]
        results.notes.append(f"{short} train: torch / bare = {timings.ratio('torch', 'bare'):.2f}x")
    resnet_ratio = next(
        t.value for t in results.targets if t.what == "resnet18 train: ours / torch"
    )
    results.targets.append(
        Target("resnet18 train: ours / torch (issue 2)", resnet_ratio, 1.05, "x")
    )


def bench_peers(results: Results, repeats: int) -> None:
    try:
        with _quiet_warnings():  # fvcore scripts helpers with the deprecated torch.jit.script
            from fvcore.nn import FlopCountAnalysis
            from ptflops import get_model_complexity_info
    except ImportError as missing:
        results.notes.append(
            f"peers skipped: {missing.name} not installed (pip install -e '.[bench]')"
        )
        return

    for label, batch in [
        ("resnet18 forward, batch 8", resnet18_batch),
        ("GPT forward, batch 8", gpt_batch),
    ]:
        model, inputs, _ = batch()
        model.eval()

        def forward(model: nn.Module = model, inputs: torch.Tensor = inputs) -> None:
            with torch.no_grad():
                model(inputs)

        def fvcore(model: nn.Module = model, inputs: torch.Tensor = inputs) -> int:
            analysis = FlopCountAnalysis(model, inputs)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            return 2 * analysis.total()  # fvcore counts one per multiply-add

        def ptflops(model: nn.Module = model, inputs: torch.Tensor = inputs) -> int:
            with contextlib.redirect_stdout(io.StringIO()):
                macs, _ = get_model_complexity_info(
                    model,
                    tuple(inputs.shape),
                    input_constructor=lambda _: inputs,
                    backend="aten",
                    as_strings=False,
                    print_per_layer_stat=False,
                    verbose=False,
                )
            return 2 * int(macs)

        with _quiet_warnings():
            times = time_variants(
                {
                    "bare": forward,
                    "torch": under(torchs, forward),
                    "ours": under(ours, forward),
                    "fvcore": fvcore,
                    "ptflops": ptflops,
                },
                repeats,
            ).medians()
            counts = {
                "ours": counted(ours, forward),
                "torch": counted(torchs, forward),
                "fvcore": fvcore(),
                "ptflops": ptflops(),
            }
        results.timings.append((label, times))
        results.counts.append((label, counts))


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    import logging
    import warnings

    fvcore_logger = logging.getLogger("fvcore")
    level = fvcore_logger.level
    fvcore_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        fvcore_logger.setLevel(level)


PLUGIN_TEST_FILE = """
import pytest
import torch

# One thread: on ops this small, OpenMP's thread handoff costs more than the
# work and swings by milliseconds, which would swamp the fixture's cost.
torch.set_num_threads(1)
torch.manual_seed(0)
MODEL = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
INPUTS = torch.randn(8, 16)


@pytest.mark.parametrize("case", range({tests}))
def test_tiny_model({fixture}case):
    {body}
"""

TIMING_CONFTEST = """
import json
import os
import time

import pytest

START = []
TESTS = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    START.append(time.perf_counter())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        TESTS.append(time.perf_counter() - start)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    with open(os.environ["BENCH_TIMING_FILE"], "w") as out:
        json.dump({"session": time.perf_counter() - START[0], "tests": TESTS}, out)
"""


PRELOAD_DYNAMO = "import torch._dynamo  # as importing torchvision or transformers does\n"


def bench_plugin(results: Results, repeats: int) -> None:
    """Pytest sessions of tiny-model tests with and without the fixture.

    The session time runs from collection to exit (interpreter start and
    plugin imports excluded, they are alike); one test's time is its whole
    protocol: setup, call, teardown and every plugin's report hooks. The
    fixture's first block imports torch._dynamo (FlopCounterMode sets a
    torch.compile stance), so the suites run twice: as they are, and with
    torch._dynamo imported up front, as sessions importing torchvision do.
    """
    bodies = {
        "no fixture": ("", "MODEL(INPUTS)"),
        "fixture": ("flops, ", "with flops(MODEL):\n        MODEL(INPUTS)"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suites: dict[str, Path] = {}
        for preload in ("", PRELOAD_DYNAMO):
            for name, (fixture, body) in bodies.items():
                suite = root / f"suite{len(suites)}"
                suite.mkdir()
                (suite / "conftest.py").write_text(preload + TIMING_CONFTEST)
                (suite / "test_tiny.py").write_text(
                    textwrap.dedent(PLUGIN_TEST_FILE).format(
                        tests=PLUGIN_TESTS, fixture=fixture, body=body
                    )
                )
                suites[f"{name}, dynamo loaded" if preload else name] = suite
        timing_file = root / "timing.json"
        env = {**os.environ, "BENCH_TIMING_FILE": str(timing_file)}

        def pytest_run(suite: Path, *options: str) -> dict[str, Any]:
            subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
                cwd=suite,
                env=env,
                check=True,
                capture_output=True,
            )
            return json.loads(timing_file.read_text())

        for name, suite in suites.items():
            if name.startswith("fixture"):
                pytest_run(suite, "--flops-update")
        sessions: dict[str, list[float]] = {name: [] for name in suites}
        tests: dict[str, list[float]] = {name: [] for name in suites}
        for _ in range(repeats):
            for name, suite in suites.items():
                timing = pytest_run(suite)
                sessions[name].append(timing["session"])
                tests[name].append(statistics.median(timing["tests"]))
    results.timings += [
        (f"{PLUGIN_TESTS} tiny-model tests: pytest session", _medians(sessions)),
        ("one of them: median test", _medians(tests)),
    ]

    def overhead_ms(samples: dict[str, list[float]], suffix: str) -> float:
        return 1000 * paired_difference(samples[f"fixture{suffix}"], samples[f"no fixture{suffix}"])

    imported = ", dynamo loaded"
    results.targets += [
        Target(
            "plugin: session overhead / tests", overhead_ms(sessions, "") / PLUGIN_TESTS, 3.0, "ms"
        ),
        Target(
            "plugin: same, torch._dynamo loaded up front",
            overhead_ms(sessions, imported) / PLUGIN_TESTS,
            3.0,
            "ms",
        ),
        Target("plugin: median test overhead", overhead_ms(tests, ""), 3.0, "ms"),
    ]


def _medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in samples.items()}


# -- report ---------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, ["-" * w for w in widths], *rows]
    ]
    return "\n".join(lines)


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


SECTIONS: dict[str, Callable[[Results, int], None]] = {
    "meta": bench_meta,
    "real": bench_real,
    "peers": bench_peers,
    "plugin": bench_plugin,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timings per figure (default 7)")
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only these sections (repeatable)"
    )
    parser.add_argument("--peak-rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_rss_child:
        peak_rss_child()
        return
    results = Results(timings=[], counts=[], targets=[], notes=[])
    load_before = load_average()
    for name in args.only or SECTIONS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        SECTIONS[name](results, args.repeats)
    results.notes.append(
        f"load average (1/5/15 min) before: {load_before}, after: {load_average()}"
    )
    print(report(results))


if __name__ == "__main__":
    main()
