"""The transformers zoo's CI subset: CPU, meta and fake counts agree, forward and train step.

tests/counting/zoo.py sweeps every architecture (docs/zoo.md has its table); this
runs its fixed subset of 44 (dense, MoE, MLA, SSM and hybrid decoders,
encoders, encoder-decoders, vision, audio, vision towers of CLIP and SigLIP),
each shrunk to 2 layers and hidden size 64 with random weights. A stand-in
count passes when its whole Measurement (totals, module rows, per-op counts,
bytes accessed, unsupported ops) equals the CPU's; where it routed experts by
the balanced convention, the CPU's run routed the same way, with the CPU's own
total (Switch Transformers, whose experts are modules of their own, has rows
that follow the routing). Every run starts from the model as built, its caches
empty.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

import torch
from torch import nn
from transformers.pytorch_utils import compile_compatible_method_lru_cache

from pytest_flops import FlopCounterMode, Measurement
from tests.counting.zoo import (
    SUBSET,
    build,
    cold,
    compare,
    forward,
    on_cpu,
    run_job,
    subset_jobs,
)

JOBS = subset_jobs()


def test_the_subset_covers_every_architecture_it_names() -> None:
    assert [config_type for config_type, _ in JOBS] == sorted(SUBSET)


def test_every_run_starts_from_the_model_as_built() -> None:
    # DINOv3 keeps its patch coordinates in an lru cache keyed by device: a run after
    # the first skips computing them (bytes only: arange, div, sub, stack, mul). Every
    # zoo run (on_cpu, and the stand-in counts) takes a copy with that cache emptied.
    model, inputs = build("dinov3_vit", "DINOv3ViTModel")
    cold = on_cpu(forward, model, inputs)
    forward(model, inputs)
    with FlopCounterMode(display=False) as counter:
        forward(model, inputs)
    warm = counter.to_measurement()
    assert warm.without_bytes() == cold.without_bytes()
    assert warm.bytes_accessed < cold.bytes_accessed
    assert compare(cold, warm, balanced=lambda: cold).startswith("differs: bytes accessed")
    assert on_cpu(forward, model, inputs) == cold


class CachesInAStaticMethod(nn.Module):
    # D-FINE keeps its sinusoidal position embeddings so: an lru cache in a class
    @staticmethod
    @compile_compatible_method_lru_cache(maxsize=4)  # type: ignore[untyped-decorator]
    def positions(length: int) -> torch.Tensor:
        return torch.arange(length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.positions(x.shape[-1])


def test_a_cache_in_a_class_of_the_modeling_module_starts_empty() -> None:
    # A run after the first finds the positions cached: no arange (writing 4 int64s,
    # 32 bytes). cold() empties the caches of the model's module's classes too.
    model, x = CachesInAStaticMethod(), torch.randn(2, 4)

    def arange_bytes(model: nn.Module) -> int:
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.to_measurement().bytes_by_op.get("aten.arange", 0)

    assert arange_bytes(model) == 32
    assert arange_bytes(model) == 0
    assert arange_bytes(cold(model)) == 32


def test_a_bytes_only_difference_is_reported_with_its_ops() -> None:
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    row = torch.randn(1, 4)

    def measured(weight: torch.Tensor) -> Measurement:
        with FlopCounterMode(display=False) as counter:
            a @ weight
        return counter.to_measurement()

    dense, broadcast = measured(b), measured(row.expand(16, 4))
    # equal FLOPs; the broadcast weight reads 4 floats where the dense one reads 64
    # (8*16 + 64 + 8*4 floats = 896 bytes, and 8*16 + 4 + 8*4 = 656)
    message = "differs: bytes accessed {'aten.mm': '656 (cpu 896)'}"
    assert compare(dense, broadcast, balanced=lambda: dense) == message
    assert compare(dense, measured(b), balanced=lambda: dense) == "equal"


@pytest.mark.slow
@pytest.mark.parametrize(("config_type", "model_name"), JOBS, ids=[c for c, _ in JOBS])
def test_stand_ins_count_as_cpu(config_type: str, model_name: str) -> None:
    row = run_job(config_type, model_name, timeout=300)
    assert (row.built, row.cpu, row.train_cpu) == ("ok", "ok", "ok"), row
    assert (row.meta, row.fake, row.train_meta, row.train_fake) == ("equal",) * 4, row
