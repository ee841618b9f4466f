"""The transformers zoo's CI subset: CPU, meta and fake counts agree, forward and train step.

tests/counting/zoo.py sweeps every architecture (docs/zoo.md has its table); this
runs its fixed subset of 40 (dense, MoE, MLA, SSM and hybrid decoders,
encoders, encoder-decoders, vision, audio, vision towers of CLIP and SigLIP),
each shrunk to 2 layers and hidden size 64 with random weights. A stand-in
count passes when its whole Measurement (totals, module rows, per-op counts,
unsupported ops) equals the CPU's; where it routed experts by the balanced
convention, the CPU's run routed the same way, with the CPU's own total
(Switch Transformers, whose experts are modules of their own, has rows that
follow the routing).
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from tests.counting.zoo import SUBSET, run_job, subset_jobs

JOBS = subset_jobs()


def test_the_subset_covers_every_architecture_it_names() -> None:
    assert [config_type for config_type, _ in JOBS] == sorted(SUBSET)


@pytest.mark.slow
@pytest.mark.parametrize(("config_type", "model_name"), JOBS, ids=[c for c, _ in JOBS])
def test_stand_ins_count_as_cpu(config_type: str, model_name: str) -> None:
    row = run_job(config_type, model_name, timeout=300)
    assert (row.built, row.cpu, row.train_cpu) == ("ok", "ok", "ok"), row
    assert (row.meta, row.fake, row.train_meta, row.train_fake) == ("equal",) * 4, row
