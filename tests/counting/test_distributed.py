"""Sharded steps on torch's fake process group: what one rank computes and communicates."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn

from pytest_flops import FlopCounterMode, Measurement, Traffic, World, fake_world

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch without distributed")


def measure(step: Callable[[], Any]) -> Measurement:
    with FlopCounterMode(display=False) as mode:
        step()
    return mode.to_measurement()


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 256, bias=False), nn.Linear(256, 64, bias=False))


X = torch.randn(8, 64)
# The unsharded MLP on a batch of 8: forward 2*8*64*256 * 2 layers = 524,288; backward
# the two weight gradients (524,288) and the second layer's input gradient (262,144)
UNSHARDED = 524_288 + 786_432


def tensor_parallel_mlp(mesh: Any) -> nn.Sequential:
    """:func:`mlp` with its first layer column-parallel and its second row-parallel."""
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    model = mlp()
    parallelize_module(model, mesh, {"0": ColwiseParallel(), "1": RowwiseParallel()})
    return model


def test_tensor_parallel_matmuls_count_a_rank_s_share() -> None:
    with fake_world(4) as mesh:
        model = tensor_parallel_mlp(mesh)
        first = measure(lambda: model(X).sum().backward())
        model.zero_grad(set_to_none=True)  # else the second backward accumulates: add_ bytes
        again = measure(lambda: model(X).sum().backward())  # shape propagation now cached
    # 4-way TP: every matmul on a quarter of the weight, 1,310,720 / 4
    assert (first.total, first.forward, first.backward) == (327_680, 131_072, 196_608)
    assert first.by_module["Sequential.0"] == {"aten.mm": 131_072}
    # the row-parallel layer all-reduces its (8, 64) fp32 output: 8*64*4 = 2,048 bytes
    assert first.communication == {"_c10d_functional.all_reduce": Traffic(calls=1, bytes=2048)}
    assert first.world == World(rank=0, size=4, mesh={"dim0": 4})
    assert first.unsupported == {}
    assert again == first  # DTensor's shape propagation is never counted, cached or not


def test_a_tensor_parallel_step_accesses_a_rank_s_shards_and_keeps_communication_apart() -> None:
    with fake_world(4) as mesh:
        model = tensor_parallel_mlp(mesh)
        measured = measure(lambda: model(X).sum().backward())
    # One rank's fp32 shards: X (8, 64) 2,048 bytes, each weight's quarter (64, 64)
    # 16,384, each activation (8, 64) 2,048. Forward: layer 0 mm(X, W0ᵀ) reads 2,048 +
    # 16,384 and writes 2,048 (20,480); layer 1 mm(h, W1ᵀ) the same (20,480). Its
    # all-reduce of (8, 64) is communication (2,048 bytes), apart: no bytes accessed.
    # sum reads 2,048 and writes 4; ones_like, its gradient seed, writes 4 (it takes
    # only the sum's shape).
    assert measured.modules["Global"].bytes_forward == 20_480 + 20_480 + 2_052 + 4
    # Backward, from the seed expanded to (8, 64) with stride 0 (4 bytes): layer 1's
    # weight gradient mm(gᵀ, h) reads 4 + 2,048 and writes 16,384 (18,436), its input
    # gradient mm(g, W1) reads 4 + 16,384 and writes 2,048 (18,436); layer 0's weight
    # gradient mm(g0ᵀ, X) reads 2,048 + 2,048 and writes 16,384 (20,480), and X needs
    # no gradient.
    assert measured.modules["Sequential.1"].bytes_backward == 2 * 18_436
    assert measured.modules["Sequential.0"].bytes_backward == 20_480
    assert measured.modules["Global"].bytes_backward == 2 * 18_436 + 20_480
    assert measured.bytes_by_op == {
        "aten.mm": 3 * 20_480 + 2 * 18_436,  # the 2 forward mms, the 3 backward
        "aten.sum": 2_052,
        "aten.ones_like": 4,
    }
    assert measured.bytes_accessed == 100_368
    assert measured.communication_bytes == 2_048  # counted apart from bytes accessed


def test_a_layer_left_replicated_counts_in_full_on_every_rank() -> None:
    with fake_world(4):
        model = mlp()  # no plan: each rank runs the whole model
        measured = measure(lambda: model(X).sum().backward())
    assert (measured.total, measured.communication) == (UNSHARDED, {})


def test_fsdp2_counts_the_unsharded_model_on_the_local_batch() -> None:
    from torch.distributed.fsdp import fully_shard

    with fake_world(4) as mesh:
        model = mlp()
        for layer in model:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        measured = measure(lambda: model(X).sum().backward())
    assert measured.total == UNSHARDED
    # each layer's 16,384 fp32 weights (65,536 bytes) gathered for the forward and again
    # for the backward; its gradient reduce-scattered from the full 65,536 bytes
    assert measured.communication == {
        "c10d._allgather_base_": Traffic(calls=4, bytes=4 * 65_536),
        "c10d._reduce_scatter_base_": Traffic(calls=2, bytes=2 * 65_536),
    }
    assert measured.unsupported == {}  # FSDP2's copy-in/out and profiler ranges cost 0
    assert set(measured.by_module) == {"Sequential", "Sequential.0", "Sequential.1"}  # not FSDP*


@pytest.mark.filterwarnings("ignore:`torch.distributed._functional_collectives:FutureWarning")
def test_collectives_move_their_largest_buffer() -> None:
    import torch.distributed._functional_collectives as funcol

    shard = torch.randn(4096)  # fp32: 16,384 bytes on each of 4 ranks
    with fake_world(4) as mesh:
        measured = measure(
            lambda: [
                funcol.wait_tensor(result)
                for result in (
                    funcol.all_gather_tensor(shard, 0, group=mesh),
                    funcol.reduce_scatter_tensor(torch.randn(16_384), "sum", 0, group=mesh),
                    funcol.all_reduce(torch.randn(1024, dtype=torch.bfloat16), "sum", group=mesh),
                    funcol.all_to_all_single(torch.randn(64, 8), None, None, group=mesh),
                )
            ]
        )
    assert measured.communication == {
        # the gathered 4 x 4,096 fp32 = 65,536 bytes
        "_c10d_functional.all_gather_into_tensor": Traffic(calls=1, bytes=65_536),
        # the 16,384-element input, 65,536 bytes, reduced to a quarter on each rank
        "_c10d_functional.reduce_scatter_tensor": Traffic(calls=1, bytes=65_536),
        # 1,024 bf16: 2,048 bytes
        "_c10d_functional.all_reduce": Traffic(calls=1, bytes=2048),
        # 64 x 8 fp32 out and in: 2,048 bytes
        "_c10d_functional.all_to_all_single": Traffic(calls=1, bytes=2048),
    }
    assert measured.total == 0 and measured.unsupported == {}


@pytest.mark.skipif(
    torch.__version__ < "2.14",
    reason="before torch 2.14 a pipeline schedule trades shapes over the group at its first "
    "step (2.13 fails on a fake group; 2.11 sends a handshake, counted as traffic)",
)
def test_a_pipeline_stage_counts_its_own_layers_and_messages() -> None:
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

    counts = {}
    for rank in (0, 1):
        with fake_world(2, rank=rank):
            microbatch = torch.zeros(2, 16)
            stage = PipelineStage(
                nn.Linear(16, 16, bias=False),
                stage_index=rank,
                num_stages=2,
                device=torch.device("cpu"),
                input_args=(microbatch,),
                output_args=(microbatch,),
            )
            # forward only: a training schedule needs the gradients the next stage sends,
            # which a fake group (it moves no data) cannot deliver
            schedule = ScheduleGPipe(stage, n_microbatches=2)
            inputs = (torch.randn(4, 16),) if rank == 0 else ()  # the last stage receives
            counts[rank] = measure(partial(schedule.step, *inputs))
    # each stage: 2 microbatches of (2, 16) @ (16, 16), 2*2*16*16 = 1,024 each
    assert counts[0].total == counts[1].total == 2048
    # stage 0 sends, stage 1 receives, each microbatch's (2, 16) fp32 activations: 128 bytes
    assert counts[0].communication == {"c10d.send": Traffic(calls=2, bytes=256)}
    assert counts[1].communication == {"c10d.recv_": Traffic(calls=2, bytes=256)}


def test_a_world_tears_down_whatever_happens_and_the_next_can_differ() -> None:
    with pytest.raises(RuntimeError, match="inside the world"), fake_world(2):
        raise RuntimeError("inside the world")
    assert not dist.is_initialized()
    with fake_world(8, rank=5, mesh_shape=(2, 4), mesh_dim_names=("dp", "tp")) as mesh:
        assert mesh.shape == (2, 4)
        assert measure(lambda: None).world == World(rank=5, size=8, mesh={"dp": 2, "tp": 4})
        with pytest.raises(RuntimeError, match="nest no worlds"), fake_world(2):
            pass
    holds_no_world = r"shape \(3, 3\) .* does not hold a world of 8 ranks"
    with pytest.raises(ValueError, match=holds_no_world), fake_world(8, mesh_shape=(3, 3)):
        pass
    with pytest.raises(ValueError, match="rank 4 is not in a world of 4"), fake_world(4, rank=4):
        pass
    assert measure(lambda: None).world is None
