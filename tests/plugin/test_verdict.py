"""The comparison's pure decision: what a test's counts against its snapshot and budget conclude."""

from dataclasses import replace
from typing import Any

import pytest
import torch

from pytest_flops import (
    FlopCounterMode,
    Measurement,
    ModuleFlops,
    SnapshotFormatError,
    Status,
    Traffic,
    World,
)
from pytest_flops.plugin.budget import Budget
from pytest_flops.plugin.marks import limit_flops
from pytest_flops.plugin.settings import DEFAULT_DEPTH
from pytest_flops.plugin.verdict import Verdict, judge
from pytest_flops.snapshots.format import FlopsSnapshot

LOCATION = "tests/__flops__/test_models.py/test_a.flops.json"


def linear(out_features: int) -> Measurement:
    # Linear(9, out) on a [4, 9] input: forward addmm 2*4*9*out, weight-grad mm the same
    flops = 2 * 4 * 9 * out_features
    row = ModuleFlops(forward=flops, backward=flops, by_op={"aten.addmm": flops, "aten.mm": flops})
    return Measurement(modules={"Global": row, "Net": row, "Net.fc": row})


def snapshot(depth: int = 3, **measurements: Measurement) -> FlopsSnapshot:
    return FlopsSnapshot(test="test_a", depth=depth, measurements=measurements)


def decide(
    current: FlopsSnapshot | None,
    stored: FlopsSnapshot | SnapshotFormatError | None,
    *,
    rtol: float = 0.0,
    update: bool = False,
    budget: Budget | None = None,
) -> Verdict:
    verdict = judge(
        nodeid="tests/test_models.py::test_a",
        location=LOCATION,
        current=current,
        stored=stored,
        rtol=rtol,
        update=update,
        budget=budget,
    )
    assert verdict is not None
    return verdict


# -- judge -----------------------------------------------------------------------------------


def test_equal_counts_pass_and_write_nothing() -> None:
    verdict = decide(snapshot(default=linear(10)), snapshot(default=linear(10)))
    assert verdict.failure is None and verdict.write is None
    assert verdict.statuses == {"default": Status.PASSED}


def test_missing_snapshot_fails_and_names_the_test() -> None:
    verdict = decide(snapshot(default=linear(10)), None)
    assert verdict.statuses == {"default": Status.NO_SNAPSHOT}
    assert verdict.write is None
    assert verdict.failure == (
        "No FLOP snapshot for tests/test_models.py::test_a (1,440 FLOP counted).\n"
        "Run `pytest --flops-update` to write tests/__flops__/test_models.py/test_a.flops.json."
    )


def test_change_puts_the_diagnosis_first_and_the_hint_last() -> None:
    verdict = decide(snapshot(default=linear(11)), snapshot(default=linear(10)))
    assert verdict.statuses == {"default": Status.CHANGED}
    # 2*4*9*10 = 720 -> 2*4*9*11 = 792 per op, forward and backward
    assert verdict.failure == (
        "FLOP count changed for tests/test_models.py::test_a: total 1,440 → 1,584 FLOP (+10.00%)\n"
        "  forward   720 → 792 FLOP (+10.00%)\n"
        "  backward  720 → 792 FLOP (+10.00%)\n"
        "\n"
        "  the change starts in (each module without its submodules):\n"
        "  module  operator    before  after    Δ\n"
        "  Net.fc  aten.addmm     720    792  +72\n"
        "  Net.fc  aten.mm        720    792  +72\n"
        "  and the sums of these rows: Global, Net\n"
        "\n"
        "Snapshot: tests/__flops__/test_models.py/test_a.flops.json\n"
        "Run `pytest --flops-update` to accept the new counts."
    )


def test_with_a_tolerance_the_diagnosis_leads_with_the_bytes_that_broke_theirs() -> None:
    def matmul(flops: int, size: int) -> Measurement:
        row = ModuleFlops(
            forward=flops,
            by_op={"aten.mm": flops},
            bytes_forward=size,
            bytes_by_op={"aten.mm": size},
        )
        return Measurement(modules={"Global": row, "Net": row})

    # FLOPs +5%, within rtol 0.1; bytes +50%, beyond bytes_rtol 0: the bytes fail the test
    verdict = judge(
        nodeid="t.py::test_a",
        location="loc",
        current=snapshot(default=matmul(105, 300)),
        stored=snapshot(default=matmul(100, 200)),
        rtol=0.1,
        bytes_rtol=0.0,
        update=False,
        budget=None,
    )
    assert verdict is not None and verdict.failure is not None
    assert verdict.failure.splitlines()[:8] == [
        "Bytes accessed changed for t.py::test_a: 200 → 300 bytes (+50.00%)",
        "  FLOP      100 → 105 FLOP (+5.00%)",
        "",
        "  the change starts in (each module without its submodules):",
        "  module  operator                  before  after     Δ",
        "  Net     aten.mm (bytes accessed)     200    300  +100",
        "  Net     aten.mm                      100    105    +5  within the tolerance",
        "  and the sums of these rows: Global",
    ]


class SmallCNN(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(width, 8, 3, padding=1),
        )
        self.classifier = torch.nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def cnn(width: int) -> Measurement:
    model = SmallCNN(width)
    with FlopCounterMode(display=False, models=model) as mode:
        model(torch.randn(1, 3, 8, 8))
    return mode.to_measurement()


def test_the_table_leads_with_where_the_change_starts() -> None:
    # the CNN widened from 32 to 48 channels, forward only, on a 1x3x8x8 input:
    # features.0 = Conv2d(3, w): 2 * (w * 64 outputs) * (3 * 9) = 3,456 w: 110,592 -> 165,888
    # features.2 = Conv2d(w, 8): 2 * (8 * 64 outputs) * (w * 9) = 9,216 w: 294,912 -> 442,368
    # classifier = Linear(512, 10): 2 * 512 * 10 = 10,240 either way, so not shown
    failure = decide(snapshot(default=cnn(48)), snapshot(default=cnn(32))).failure
    assert failure is not None
    table = failure.split("\n\n")[1]
    assert table.splitlines() == [
        "  the change starts in (each module without its submodules):",
        "  module               operator           before    after         Δ",
        "  SmallCNN.features.2  aten.convolution  294,912  442,368  +147,456",
        "  SmallCNN.features.0  aten.convolution  110,592  165,888   +55,296",
        "  and the sums of these rows: Global, SmallCNN, SmallCNN.features",
    ]


def test_a_parent_with_counts_of_its_own_shows_only_those() -> None:
    # Attention does a matmul itself (400 -> 500) and calls proj (100, unchanged):
    # its own row moves by +100, proj has no row, Global only sums Attention
    def attention(own: int) -> Measurement:
        whole = ModuleFlops(forward=own + 100, by_op={"aten.bmm": own, "aten.mm": 100})
        proj = ModuleFlops(forward=100, by_op={"aten.mm": 100})
        return Measurement(modules={"Global": whole, "Attention": whole, "Attention.proj": proj})

    failure = decide(snapshot(default=attention(500)), snapshot(default=attention(400))).failure
    assert failure is not None
    assert failure.split("\n\n")[1].splitlines()[2:] == [
        "  Attention  aten.bmm     400    500  +100",
        "  and the sums of these rows: Global",
    ]


def test_every_row_where_a_change_starts_is_shown() -> None:
    # 30 blocks, block i doubles its mm from i to 2 i: 30 rows, none left out
    def blocks(factor: int) -> Measurement:
        total = ModuleFlops(forward=465 * factor, by_op={"aten.mm": 465 * factor})
        rows = {
            f"GPT.blocks.{i}": ModuleFlops(forward=i * factor, by_op={"aten.mm": i * factor})
            for i in range(1, 31)
        }
        return Measurement(modules={"Global": total, **rows})

    failure = decide(snapshot(default=blocks(2)), snapshot(default=blocks(1))).failure
    assert failure is not None
    lines = failure.split("\n\n")[1].splitlines()
    assert [line.split()[0] for line in lines[2:-1]] == [
        f"GPT.blocks.{i}"
        for i in range(30, 0, -1)  # the largest change first
    ]
    assert lines[-1] == "  and the sums of these rows: Global"


def test_equal_changes_list_global_first_then_blocks_in_numeric_order() -> None:
    # every block doubles its mm, 100 -> 200; as text "blocks.10" would sort before "blocks.2"
    def blocks(flops: int) -> Measurement:
        row = ModuleFlops(forward=flops, by_op={"aten.mm": flops})
        total = ModuleFlops(forward=12 * flops, by_op={"aten.mm": 12 * flops})
        return Measurement(
            modules={"Global": total, **{f"Encoder.blocks.{i}": row for i in range(12)}}
        )

    rows = blocks(100).diff(blocks(200)).rows
    assert [row.module for row in rows] == [
        "Global",  # +1200, the largest change
        *(f"Encoder.blocks.{i}" for i in range(12)),  # +100 each
    ]


def test_global_leads_a_tie() -> None:
    # "Encoder" sorts before "Global" as text; the diagnosis starts with the whole model
    row = ModuleFlops(forward=10, by_op={"aten.mm": 10})
    before = Measurement(modules={"Global": ModuleFlops(), "Encoder": ModuleFlops()})
    after = Measurement(modules={"Global": row, "Encoder": row})
    assert [row.module for row in before.diff(after).rows] == ["Global", "Encoder"]


def test_rtol_accepts_small_changes_only() -> None:
    stored, current = snapshot(default=linear(10)), snapshot(default=linear(11))
    assert decide(current, stored, rtol=0.1).failure is None  # +10.00% everywhere
    assert decide(current, stored, rtol=0.09).statuses == {"default": Status.CHANGED}


def test_rows_deeper_than_either_depth_are_not_compared() -> None:
    shallow = snapshot(depth=1, default=linear(10).truncated(1))
    verdict = decide(snapshot(depth=3, default=linear(10)), shallow)
    assert verdict.failure is None
    assert decide(snapshot(depth=3, default=linear(10)), shallow, update=True).write is not None


def test_named_measurements_that_come_or_go_fail() -> None:
    verdict = decide(
        snapshot(default=linear(10), decode=linear(10)),
        snapshot(default=linear(10), prefill=linear(10)),
    )
    # the one that went is a record of its own: every export shows the test failed
    assert verdict.statuses == {
        "default": Status.PASSED,
        "decode": Status.CHANGED,
        "prefill": Status.MISSING,
    }
    assert verdict.measurements["prefill"] == Measurement()
    assert verdict.failure is not None
    assert "FLOP measurement 'decode' of tests/test_models.py::test_a is new: 1,440 FLOP" in (
        verdict.failure
    )
    assert "'prefill' of tests/test_models.py::test_a was not measured this time" in verdict.failure


def test_unreadable_snapshot_fails_naming_the_problem() -> None:
    error = SnapshotFormatError("tests/__flops__/test_models.py/test_a.flops.json: not valid JSON")
    verdict = decide(snapshot(default=linear(10)), error)
    assert verdict.statuses == {"default": Status.INVALID_SNAPSHOT}
    assert verdict.failure == (
        "Cannot read the FLOP snapshot of tests/test_models.py::test_a: "
        "tests/__flops__/test_models.py/test_a.flops.json: not valid JSON\n"
        "Run `pytest --flops-update` to rewrite tests/__flops__/test_models.py/test_a.flops.json."
    )


@pytest.mark.parametrize(
    ("stored", "status"),
    [
        (None, Status.NEW),
        (SnapshotFormatError("broken"), Status.NEW),
        (snapshot(default=linear(10)), Status.UPDATED),
    ],
)
def test_update_writes_missing_broken_and_changed_snapshots(
    stored: FlopsSnapshot | SnapshotFormatError | None, status: Status
) -> None:
    current = snapshot(default=linear(11))
    verdict = decide(current, stored, update=True)
    assert verdict.failure is None
    assert verdict.write == current
    assert verdict.statuses == {"default": status}


def test_update_takes_a_vanished_name_out_of_the_snapshot() -> None:
    current = snapshot(default=linear(10))
    verdict = decide(current, snapshot(default=linear(10), prefill=linear(10)), update=True)
    assert verdict.write == current
    assert verdict.statuses == {"default": Status.PASSED, "prefill": Status.REMOVED}


def test_a_test_that_measured_nothing_fails_against_its_snapshot() -> None:
    verdict = decide(None, snapshot(default=linear(10)))
    assert verdict.statuses == {"default": Status.MISSING}
    assert verdict.failure == (
        "tests/test_models.py::test_a measured no FLOPs this time, but its snapshot has "
        "1,440 FLOP (no `with flops(...)` block finished).\n"
        f"Snapshot: {LOCATION}\n"
        "Run `pytest --flops-prune` to remove it, if the test should not measure."
    )
    removed = decide(None, snapshot(default=linear(10)), update=True)
    assert removed.remove and removed.failure is None
    assert removed.statuses == {"default": Status.REMOVED}
    # nothing measured, nothing stored: nothing to say
    assert (
        judge(
            nodeid="t",
            location=LOCATION,
            current=None,
            stored=None,
            rtol=0,
            update=False,
            budget=None,
        )
        is None
    )


def test_update_moves_a_snapshot_of_the_old_layout_even_when_equal() -> None:
    current = snapshot(default=linear(10))
    verdict = judge(
        nodeid="t",
        location=LOCATION,
        current=current,
        stored=current,
        rtol=0,
        update=True,
        budget=None,
        must_write=True,
    )
    assert verdict is not None and verdict.write == current
    assert verdict.statuses == {"default": Status.PASSED}


def test_update_never_writes_a_test_over_budget() -> None:
    budget = limit_flops(1000)
    verdict = decide(snapshot(default=linear(11)), None, update=True, budget=budget)
    assert verdict.write is None
    assert verdict.statuses == {"default": Status.OVER_BUDGET}
    assert verdict.failure == (
        "FLOP budget exceeded by tests/test_models.py::test_a: used 1.58 KFLOP, limit 1 KFLOP"
    )


# -- the default depth reaches the projections of stock Hugging Face models ------------------


def hf_models(wide_layer: bool) -> dict[str, torch.nn.Module]:
    """GPT-2 and Llama with 2 layers of random weights; layer 1's MLP wider when asked."""
    transformers = pytest.importorskip("transformers")
    gpt2_config = transformers.GPT2Config(
        n_layer=2, n_embd=16, n_head=2, n_inner=64, vocab_size=32, n_positions=8
    )
    llama_config = transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=16, intermediate_size=64, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=32,
    )  # fmt: skip
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(gpt2_config)
    llama = transformers.LlamaForCausalLM(llama_config)
    if wide_layer:
        from transformers.models.gpt2.modeling_gpt2 import GPT2MLP
        from transformers.models.llama.modeling_llama import LlamaMLP

        gpt2.transformer.h[1].mlp = GPT2MLP(96, gpt2_config)
        llama.model.layers[1].mlp = LlamaMLP(llama_config.__class__(**{
            **llama_config.to_dict(), "intermediate_size": 96
        }))  # fmt: skip
    return {"gpt2": gpt2, "llama": llama}


def forward_counts(model: torch.nn.Module) -> FlopsSnapshot:
    with FlopCounterMode(display=False, models=model) as mode, torch.no_grad():
        model(torch.arange(8).reshape(1, 8))
    return snapshot(depth=DEFAULT_DEPTH, default=mode.to_measurement()).at_depth(DEFAULT_DEPTH)


def test_a_widened_projection_of_one_layer_is_named_by_the_default_depth() -> None:
    before, after = hf_models(wide_layer=False), hf_models(wide_layer=True)
    tables = {}
    for name in before:
        failure = decide(forward_counts(after[name]), forward_counts(before[name])).failure
        assert failure is not None
        tables[name] = failure.split("\n\n")[1].splitlines()[2:]
    # 8 tokens, hidden 16, MLP 64 -> 96: each projection 2*8*16*64 = 16,384 -> 24,576
    assert tables["gpt2"] == [
        "  GPT2LMHeadModel.transformer.h.1.mlp.c_fc    aten.addmm  16,384  24,576  +8,192",
        "  GPT2LMHeadModel.transformer.h.1.mlp.c_proj  aten.addmm  16,384  24,576  +8,192",
        "  and the sums of these rows: Global, GPT2LMHeadModel, GPT2LMHeadModel.transformer, "
        "GPT2LMHeadModel.transformer.h.1, GPT2LMHeadModel.transformer.h.1.mlp",
    ]
    assert tables["llama"] == [
        "  LlamaForCausalLM.model.layers.1.mlp.down_proj  aten.mm   16,384  24,576  +8,192",
        "  LlamaForCausalLM.model.layers.1.mlp.gate_proj  aten.mm   16,384  24,576  +8,192",
        "  LlamaForCausalLM.model.layers.1.mlp.up_proj    aten.mm   16,384  24,576  +8,192",
        "  and the sums of these rows: Global, LlamaForCausalLM, LlamaForCausalLM.model, "
        "LlamaForCausalLM.model.layers.1, LlamaForCausalLM.model.layers.1.mlp",
    ]


def test_a_snapshot_of_the_old_default_depth_passes_and_is_deepened_by_update() -> None:
    llama = hf_models(wide_layer=False)["llama"]
    current = forward_counts(llama)
    old = current.at_depth(3)  # as stored when the default was 3
    # 4 rows that count FLOPs, and 3 that only move bytes: embed_tokens, norm, rotary_emb
    assert old.depth == 3 and len(old.measurements["default"].modules) == 4 + 3
    verdict = decide(current, old)
    assert verdict.failure is None and verdict.statuses == {"default": Status.PASSED}
    updated = decide(current, old, update=True)
    # every row is kept, the deeper ones added: 4 + 2 layers x 10 rows (the layer,
    # self_attn and its 4 projections, mlp and its 3) = 24 rows that count FLOPs, and 11
    # that only move bytes: the 3 above, and per layer its 2 norms, act_fn and the
    # attention's autograd Function
    assert updated.write == current and len(current.measurements["default"].modules) == 35
    assert set(old.measurements["default"].modules) < set(current.measurements["default"].modules)


# -- what rtol loosens -------------------------------------------------------------------

ROW = ModuleFlops(
    forward=1_000,
    by_op={"aten.mm": 1_000},
    communication={"_c10d_functional.all_reduce": Traffic(calls=2, bytes=4_096)},
)


def loosely(current: Measurement, stored: Measurement) -> Verdict:
    # rtol = 1: every FLOP count may double, or fall to 0
    verdict = judge(
        nodeid="test_models.py::test_a",
        location=LOCATION,
        current=snapshot(default=current),
        stored=snapshot(default=stored),
        rtol=1.0,
        update=False,
        budget=None,
    )
    assert verdict is not None
    return verdict


def test_rtol_loosens_flops() -> None:
    doubled = replace(ROW, forward=2_000, by_op={"aten.mm": 2_000})
    stored = Measurement(modules={"Global": ROW})
    assert loosely(Measurement(modules={"Global": doubled}), stored).failure is None


@pytest.mark.parametrize(
    "moved",
    [
        # an op that ran no more: its 1,000 FLOPs fall to 0, within rtol = 1
        {"modules": {"Global": replace(ROW, by_op={"aten.mm": 1_000, "aten.bmm": 0})}},
        {"modules": {"Global": replace(ROW, by_op={})}},
        # a collective called once more: as many bytes, one more call
        {
            "modules": {
                "Global": replace(
                    ROW,
                    communication={"_c10d_functional.all_reduce": Traffic(calls=3, bytes=4_096)},
                )
            }
        },
        {"unsupported": {"aten.nonzero": 2}},  # the snapshot's ran once
        {"world": World(rank=0, size=4)},  # the snapshot's ran on 2
    ],
    ids=[
        "an op appears",
        "an op vanishes",
        "one more call",
        "an uncounted op's calls",
        "world size",
    ],
)
def test_rtol_never_loosens_calls_the_world_or_which_ops_ran(moved: dict[str, Any]) -> None:
    stored = Measurement(
        modules={"Global": ROW}, unsupported={"aten.nonzero": 1}, world=World(rank=0, size=2)
    )
    verdict = loosely(replace(stored, **moved), stored)
    assert verdict.statuses == {"default": Status.CHANGED}
