"""Peer counters on forward passes: fvcore and ptflops (they count no backward)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import torch
from harness import Results, time_variants, under
from steps import counted, gpt_batch, ours, resnet18_batch, torchs
from torch import nn


def run(results: Results, repeats: int) -> None:
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
