"""Counting models too big to run: Llama 7B and 70B train steps on the meta device.

The floor of any dispatch-mode counter is a mode that counts nothing; ours is
measured against it on the same step and kernels. Counting sends meta
attention to the CPU's fused kernel, as a CPU run would take it, where bare
meta execution runs PyTorch's math decomposition, a different (slower) step:
"bare, CPU kernels" and the floor run the kernels ours runs.
"""

from __future__ import annotations

import functools
import gc
import resource
import subprocess
import sys

from harness import Results, Target, time_variants, under
from steps import (
    NoOpOnCpuKernels,
    counted,
    llama_train_step,
    meta_llama,
    ours,
    torchs,
)

from examples.llama import LLAMA_7B, LLAMA_70B
from pytest_flops import count
from pytest_flops.counting.meta_as_cpu import cpu_kernels_on_meta


def run(results: Results, repeats: int) -> None:
    model, tokens = meta_llama(LLAMA_7B)
    step_7b = functools.partial(llama_train_step, model, tokens)
    timings = time_variants(
        {
            "bare": step_7b,
            "bare, CPU kernels": under(cpu_kernels_on_meta, step_7b),
            "no-op mode": under(NoOpOnCpuKernels, step_7b),
            "torch": under(torchs, step_7b),
            "ours": under(ours, step_7b),
            "ours, count()": functools.partial(count, llama_train_step, model, tokens),
        },
        repeats,
    )
    times = timings.medians()
    results.timings.append(("Llama 7B fwd+bwd, meta, seq 2048", times))
    results.targets += [
        # issue 28 set 1.10x with bytes accessed counted on every op
        Target(
            "meta 7B: ours / no-op mode (the floor)", timings.ratio("ours", "no-op mode"), 1.10, "x"
        ),
        Target(
            "meta 7B: ours / bare on the same kernels",
            timings.ratio("ours", "bare, CPU kernels"),
            1.3,
            "x",
        ),
        Target("meta 7B: ours / torch", timings.ratio("ours", "torch"), 1.0, "x"),
    ]
    results.notes += [
        f"meta 7B: no-op mode / bare on the same kernels = "
        f"{timings.ratio('no-op mode', 'bare, CPU kernels'):.2f}x",
        f"meta 7B: torch / bare = {timings.ratio('torch', 'bare'):.2f}x",
        f"meta 7B: count() / bare on the same kernels = "
        f"{timings.ratio('ours, count()', 'bare, CPU kernels'):.2f}x",
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

    child = subprocess.run([sys.executable, __file__], capture_output=True, text=True, check=True)
    results.targets.append(Target("meta 70B count: peak RSS", float(child.stdout), 1024, "MB"))


def peak_rss_of_a_70b_count() -> float:
    """Count one 70B train step (in a fresh process): its peak RSS in MB."""
    counted(ours, functools.partial(llama_train_step, *meta_llama(LLAMA_70B)))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    print(peak_rss_of_a_70b_count())
