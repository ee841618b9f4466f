"""Llama 7B sharded 2-way tensor parallel x 4-way FSDP2, as rank 0 of 8 fake ranks.

A sharded training step is counted per rank: each op on the shards that rank
holds, and every collective with its bytes. The snapshot holds rank 0's FLOPs
and communication; a plan that stops sharding a layer, or adds an all-gather,
changes them and fails the test. FSDP2 refuses parameters on the meta device,
so the model is built from fake tensors (no storage either).
"""

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from examples.llama import LLAMA_7B, Llama, shard
from pytest_flops import Flops, fake_world


def test_llama_7b_tp2_fsdp4_train_step(flops: Flops) -> None:
    with fake_world(8, mesh_shape=(4, 2), mesh_dim_names=("dp", "tp")) as mesh:
        fake = FakeTensorMode(allow_non_fake_inputs=True)  # FSDP2's buffers are real tensors
        with fake:
            model = Llama(LLAMA_7B)
        shard(model, mesh)
        tokens = fake.from_tensor(torch.zeros(1, 2048, dtype=torch.long))  # this rank's batch
        with fake, flops(model):
            logits = model(tokens)
            F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    assert flops.measurement.world is not None and flops.measurement.world.size == 8
