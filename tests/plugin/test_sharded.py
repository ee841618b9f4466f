"""Sharded steps through the fixture: per-rank snapshots, communication gated like FLOPs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.forked_pytest import runpytest_forked
from tests.helpers import flops_line, stored

ROOT = Path(__file__).resolve().parents[2]

TP_MLP = """
import torch
from torch.distributed.tensor import Replicate
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from pytest_flops import fake_world

SHARD_SECOND = {shard_second}


def test_tp_mlp(flops):
    with fake_world(4) as mesh:
        model = torch.nn.Sequential(
            torch.nn.Linear(64, 256, bias=False), torch.nn.Linear(256, 64, bias=False)
        )
        if SHARD_SECOND:
            plan = {{"0": ColwiseParallel(), "1": RowwiseParallel()}}
        else:  # the second layer left whole: the first gathers its output for it
            plan = {{"0": ColwiseParallel(output_layouts=Replicate())}}
        parallelize_module(model, mesh, plan)
        with flops(model):
            model(torch.randn(8, 64)).sum().backward()
"""


def test_communication_is_stored_and_gated_like_flops(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_tp=TP_MLP.format(shard_second=True))
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    document = stored(pytester, "test_tp.py")["test_tp_mlp"]
    assert document["version"] == 4
    default = document["measurements"]["default"]
    assert default["total"] == 327_680  # 4-way TP: a quarter of the MLP's 1,310,720
    assert default["world"] == {"rank": 0, "size": 4, "mesh": {"dim0": 4}}
    # the row-parallel layer's (8, 64) fp32 output, all-reduced: 2,048 bytes
    assert default["modules"]["Global"]["communication"] == {
        "_c10d_functional.all_reduce": {"calls": 1, "bytes": 2048}
    }
    pytester.runpytest().assert_outcomes(passed=1)

    # The second layer left whole: its (8, 256) @ (256, 64) in full, 2*8*256*64 = 262,144
    # forward instead of 65,536, and as much for each of its weight and input gradients;
    # the first layer's output ((8, 256) fp32, 8,192 bytes) all-gathered for it, where
    # the all-reduce of 2,048 bytes was.
    pytester.makepyfile(test_tp=TP_MLP.format(shard_second=False))
    result = pytester.runpytest("--flops-report")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "FLOP count changed for test_tp.py::test_tp_mlp: "
            "total 327,680 → 917,504 FLOP (+180.00%)",
            "  forward   131,072 → 327,680 FLOP (+150.00%)",
            "  backward  196,608 → 589,824 FLOP (+200.00%)",
            "  comm      2,048 → 8,192 bytes (+300.00%)",
            # where it starts: the second layer, 196,608 = 65,536 * 3 -> 262,144 * 3
            "  Sequential.1  aten.mm  *196,608*786,432*+589,824",
        ]
    )
    result.stdout.fnmatch_lines_random(
        [
            "*Sequential    _c10d_functional.all_gather_into_tensor (bytes)*0*8,192*+8,192",
            "*Sequential    _c10d_functional.all_reduce (bytes)*2,048*0*-2,048",
        ]
    )
    assert "| comm |" not in result.stdout.str()
    result.stdout.fnmatch_lines(["test  *total  *forward  *backward  *comm  *change*"])


def test_snapshots_from_before_communication_was_recorded_still_pass(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_tp=TP_MLP.format(shard_second=True))
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    path = pytester.path / "__flops__" / "test_tp.py" / "test_tp_mlp.flops.json"
    document = json.loads(path.read_text())
    document["version"] = 1  # as pytest-flops 0.1 wrote it: no communication, no world,
    default = document["measurements"]["default"]  # no bytes
    del default["world"], default["bytes_accessed"]
    for row in default["modules"].values():
        for later in ("communication", "bytes", "flops_by_precision"):
            row.pop(later, None)
    path.write_text(json.dumps(document, indent=2) + "\n")
    version_1 = path.read_bytes()

    result = pytester.runpytest()  # "not recorded" is not a change
    result.assert_outcomes(passed=1)
    assert path.read_bytes() == version_1
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    assert json.loads(path.read_text())["version"] == 4  # rewritten with its communication


def test_a_communication_budget(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_tp=TP_MLP.format(shard_second=True).replace(
            "def test_tp_mlp",
            "import pytest\n\n@pytest.mark.limit_flops(communication='1 kB')\ndef test_tp_mlp",
        )
    )
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["FLOP budget exceeded by test_tp.py::test_tp_mlp: communication: used 2.05 kB, limit 1 kB"]
    )


@pytest.mark.slow
def test_worlds_of_different_sizes_follow_each_other_and_run_under_xdist(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_worlds="""
import pytest
import torch
from torch.distributed.tensor.parallel import ColwiseParallel, parallelize_module

from pytest_flops import fake_world


@pytest.mark.parametrize("size", [2, 4, 8, 1])
def test_world(flops, size):
    with fake_world(size) as mesh:
        model = torch.nn.Linear(64, 256, bias=False)
        parallelize_module(model, mesh, ColwiseParallel())
        with flops(model):
            model(torch.randn(8, 64))
    assert flops.measurement.world.size == size


def test_a_failing_world_leaves_none_behind():
    with pytest.raises(ZeroDivisionError):
        with fake_world(2):
            1 / 0
    assert not torch.distributed.is_initialized()
"""
    )
    result = runpytest_forked(pytester, "-n", "2", "--flops-update")
    result.assert_outcomes(passed=5)
    totals = {
        test: document["measurements"]["default"]["total"]
        for test, document in stored(pytester, "test_worlds.py").items()
    }
    # (8, 64) @ (64, 256 / size): 2*8*64*256 = 262,144 split across the world
    assert totals == {f"test_world[{size}]": 262_144 // size for size in (2, 4, 8, 1)}
    result = runpytest_forked(pytester, "-n", "2")
    result.assert_outcomes(passed=5)
    assert flops_line(result) == "flops: 4 tests passed, 0 failed, 0 written, 0 removed"


def test_dropping_the_mlp_plan_of_the_sharded_llama_fails_readably(
    pytester: pytest.Pytester,
) -> None:
    pytester.syspathinsert(ROOT)  # examples/
    source = (ROOT / "examples" / "test_sharded_llama.py").read_text()
    small = (
        "LlamaConfig(n_layers=2, d_model=256, n_heads=4, n_kv_heads=4, ffn_dim=512, "
        "vocab_size=1000)"
    )
    source = source.replace("LLAMA_7B, Llama, shard", "Llama, LlamaConfig, shard").replace(
        "Llama(LLAMA_7B)", f"Llama({small})"
    )
    pytester.makepyfile(test_sharded=source)
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    pytester.makepyfile(
        test_sharded=source.replace(
            "shard(model, mesh)", "shard(model, mesh, mlp_tensor_parallel=False)"
        )
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    # Each layer's MLP now runs whole on the rank: its three (2048, 256) x (256, 512)
    # products, 2*2048*256*512 = 536,870,912 each, count in full instead of halved:
    # +805,306,368 forward per layer, +1,610,612,736 for the 2 layers; backward the
    # input and weight gradients of each, twice that. Communication: per layer the
    # down projection's forward all-reduce and the gate and up projections' backward
    # ones go, 3 x (1, 2048, 256) fp32 = 3 x 2,097,152 bytes; FSDP2 now gathers the
    # MLP's 3*256*512 weights whole over tp, 196,608 fp32 more per gather (786,432
    # bytes), twice per layer, and reduce-scatters them once: +3,145,728 and +1,572,864.
    result.stdout.fnmatch_lines(
        [
            "FLOP count changed for test_sharded.py::test_llama_7b_tp2_fsdp4_train_step: "
            "total 26,231,177,216 → 31,063,015,424 FLOP (+18.42%)",
            "  forward   8,027,897,856 → 9,638,510,592 FLOP (+20.06%)",
            "  backward  18,203,279,360 → 21,424,504,832 FLOP (+17.70%)",
            "  comm      41,334,784 → 33,470,464 bytes (-19.03%)",
        ]
    )
    result.stdout.fnmatch_lines_random(
        [
            # at depth 6 each all-reduce starts in its own row: the down projection's
            # forward one in the MLP's (the parallel style's output hook), the gate and up
            # projections' backward ones in theirs, 2,097,152 bytes each
            "  Llama.layers.0.mlp *_c10d_functional.all_reduce (bytes)*2,097,152*0 *-2,097,152",
            "  Llama.layers.0.mlp.gate_proj *all_reduce (bytes)*2,097,152*0 *-2,097,152",
            "  Llama.layers.0.mlp.up_proj *all_reduce (bytes)*2,097,152*0 *-2,097,152",
            # the gathers and reduce-scatters start in the rows whose FSDP2 hooks ran them:
            # +1,572,864 + 786,432 + 786,432 = +3,145,728 gathered, 2 x 786,432 scattered
            "  Llama.layers.1 *c10d._allgather_base_ (bytes)*2,625,536*4,198,400*+1,572,864",
            "  Llama.layers.0 *c10d._allgather_base_ (bytes)*1,312,768*2,099,200*+786,432",
            "  Llama.lm_head *c10d._allgather_base_ (bytes)*1,312,768*2,099,200*+786,432",
            "  Llama.layers.0 *c10d._reduce_scatter_base_ (bytes)*1,312,768*2,099,200*+786,432",
            "  Llama.layers.1 *c10d._reduce_scatter_base_ (bytes)*1,312,768*2,099,200*+786,432",
            "  and the sums of these rows: Global, Llama",
        ]
    )
