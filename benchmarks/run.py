"""Every pytest-flops speed and memory target, measured in one run: ``python benchmarks/run.py``.

Each figure is the median of ``--repeats`` timings. The variants of one step
(bare, under torch's FlopCounterMode, under ours, ...) run interleaved, in a
rotating order, so that load from other processes hits them alike; every
ratio compares figures of this one run. Needs the ``bench`` extra for the
peer tools: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import bench_gpu
import bench_html
import bench_meta
import bench_peers
import bench_plugin
import bench_real
from harness import Results, load_average, report

SECTIONS: dict[str, Callable[[Results, int], None]] = {
    "meta": bench_meta.run,
    "real": bench_real.run,
    "peers": bench_peers.run,
    "plugin": bench_plugin.run,
    "gpu": bench_gpu.run,
    "html": bench_html.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timings per figure (default 7)")
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only these sections (repeatable)"
    )
    args = parser.parse_args()
    results = Results()
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
