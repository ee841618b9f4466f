"""Real-compute train steps on the CPU: resnet18 and a GPT-style LM, bare, torch's, ours."""

from __future__ import annotations

from harness import Results, Target, time_variants, under
from steps import gpt_batch, ours, resnet18_batch, torchs, train_step


def run(results: Results, repeats: int) -> None:
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
