"""Counting overhead on a GPU: a bf16 Llama-300M train step and a resnet50 train step.

Ours against the bare step and against torch's counter, in one run, with the
device synchronized around every timing. Without CUDA it measures nothing and
says so in the notes: those figures stay unmeasured.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from harness import Results, Target, time_variants, under
from steps import ours, torchs, train_step

from examples.llama import Llama, LlamaConfig

LLAMA_300M = LlamaConfig(
    n_layers=16, d_model=1024, n_heads=16, n_kv_heads=16, ffn_dim=2816, vocab_size=32000
)


def run(results: Results, repeats: int) -> None:
    if not torch.cuda.is_available():
        results.notes.append("gpu: no CUDA device here; the GPU figures are not measured")
        return
    torch.manual_seed(0)
    llama = Llama(LLAMA_300M).to("cuda", torch.bfloat16)
    tokens = torch.randint(0, LLAMA_300M.vocab_size, (8, 1024), device="cuda")
    from torchvision.models import resnet50

    resnet = resnet50().cuda()
    images = torch.randn(32, 3, 224, 224, device="cuda")
    labels = torch.randint(0, 1000, (32,), device="cuda")
    for short, name, step in [
        ("Llama-300M", "Llama-300M bf16 train step, 8 x 1024", train_step(llama, tokens, tokens)),
        ("resnet50", "resnet50 train step, batch 32", train_step(resnet, images, labels)),
    ]:
        synced = functools.partial(_synchronized, step)
        timings = time_variants(
            {"bare": synced, "torch": under(torchs, synced), "ours": under(ours, synced)}, repeats
        )
        results.timings.append((f"{name} ({torch.cuda.get_device_name()})", timings.medians()))
        limit = 3.0 if short == "Llama-300M" else float("inf")
        results.targets += [
            Target(f"gpu {short}: ours / bare", timings.ratio("ours", "bare"), limit, "x"),
            Target(f"gpu {short}: ours / torch", timings.ratio("ours", "torch"), 1.0, "x"),
        ]
        results.notes.append(f"gpu {short}: torch / bare = {timings.ratio('torch', 'bare'):.2f}x")


def _synchronized(step: Callable[[], object]) -> None:
    torch.cuda.synchronize()
    step()
    torch.cuda.synchronize()
