"""Fused kernels stored under device-independent names: a snapshot recorded on one
device passes on another."""

from __future__ import annotations

from typing import Literal

import pytest
import torch
import torch.nn.functional as F

import pytest_flops
from pytest_flops import FlopCounterMode, Measurement, ModuleFlops
from pytest_flops.plugin.verdict import judge
from pytest_flops.portable import PORTABLE_NAMES, portable, portable_ops
from pytest_flops.snapshots.format import FlopsSnapshot
from tests.forked_pytest import runpytest_forked


class Mixer(torch.nn.Module):
    """An LSTM, then attention over its outputs: both run as fused kernels."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        q = h.reshape(1, 4, 2, 4).transpose(1, 2)  # B=1, H=2, S=4, D=4
        return F.scaled_dot_product_attention(q, q, q)


def train_step(model: Mixer, x: torch.Tensor) -> None:
    model(x).sum().backward()


# LSTM(8, 8) on 4 tokens: 2*4*(32*8 + 32*8) = 4,096 forward, twice that backward.
# Attention, B=1, H=2, S=4, D=4: 2*1*2*4*4*(4+4) = 512 forward, 2*1*2*4*4*(3*4+2*4)
# = 1,280 backward.
PORTABLE = {
    "fused.rnn": 4_096,
    "fused.rnn_backward": 8_192,
    "fused.scaled_dot_product_attention": 512,
    "fused.scaled_dot_product_attention_backward": 1_280,
}


def on_cpu(model: Mixer, x: torch.Tensor) -> Measurement:
    with FlopCounterMode(display=False, models=model) as mode:
        train_step(model, x)
    # torch's own table keeps the CPU's kernel names; the measurement does not
    assert {str(op) for op in mode.get_flop_counts()["Global"]} >= {
        "aten.mkldnn_rnn_layer",
        "aten._scaled_dot_product_flash_attention_for_cpu",
    }
    return mode.to_measurement()


@pytest.mark.parametrize("device", ["meta", "fake"])
def test_a_snapshot_recorded_on_cpu_passes_on_meta_and_fake(
    device: Literal["meta", "fake"],
) -> None:
    model, x = Mixer(), torch.randn(1, 4, 8)
    recorded = on_cpu(model, x)
    assert recorded.by_op == PORTABLE
    assert recorded.total == 14_080
    counted = pytest_flops.count(train_step, model, x, device=device)
    # bytes too: on meta and fake tensors, the oneDNN LSTM backward returns two bias
    # gradients while counting, as the CPU does
    assert counted == recorded
    verdict = judge(
        nodeid="t.py::test_mixer",
        location="__flops__/t.py/test_mixer.flops.json",
        current=FlopsSnapshot(test="test_mixer", depth=6, measurements={"default": counted}),
        stored=FlopsSnapshot(test="test_mixer", depth=6, measurements={"default": recorded}),
        rtol=0.0,
        update=False,
        budget=None,
    )
    assert verdict is not None and verdict.failure is None


def as_recorded_on(measurement: Measurement, names: dict[str, str]) -> Measurement:
    """The same counts under a backend's kernel names, as an older snapshot holds them."""
    modules = {
        path: ModuleFlops(
            forward=row.forward,
            backward=row.backward,
            by_op={names.get(op, op): flops for op, flops in row.by_op.items()},
        )
        for path, row in measurement.modules.items()
    }
    return Measurement(modules=modules, bytes_recorded=False)  # as format 3 and older


CUDA_NAMES = {
    "fused.rnn": "aten._cudnn_rnn",
    "fused.rnn_backward": "aten._cudnn_rnn_backward",
    "fused.scaled_dot_product_attention": "aten._scaled_dot_product_efficient_attention",
    "fused.scaled_dot_product_attention_backward": (
        "aten._scaled_dot_product_efficient_attention_backward"
    ),
}


def test_old_backend_names_compare_as_portable_and_the_next_update_rewrites_them() -> None:
    model, x = Mixer(), torch.randn(1, 4, 8)
    current = FlopsSnapshot(test="test_mixer", depth=6, measurements={"default": on_cpu(model, x)})
    for names in (CUDA_NAMES, {v: k for k, v in PORTABLE_NAMES.items()}):
        old = FlopsSnapshot(
            test="test_mixer",
            depth=6,
            measurements={"default": as_recorded_on(current.measurements["default"], names)},
        )
        assert "aten." in old.to_text() and "fused." not in old.to_text()
        stored = FlopsSnapshot.from_text(old.to_text(), where="old.flops.json")
        arguments = dict(
            nodeid="t.py::test_mixer",
            location="__flops__/t.py/test_mixer.flops.json",
            current=current,
            stored=stored,
            rtol=0.0,
            budget=None,
        )
        compared = judge(**arguments, update=False)  # type: ignore[arg-type]
        assert compared is not None and compared.failure is None and compared.write is None
        assert compared.baseline is not None
        assert compared.baseline.measurements["default"].by_op == PORTABLE  # as reported
        updated = judge(**arguments, update=True)  # type: ignore[arg-type]
        assert updated is not None and updated.write == current  # the file is rewritten


def test_two_backend_kernels_of_one_row_add_up() -> None:
    assert portable_ops({"aten.mkldnn_rnn_layer": 3, "aten._cudnn_rnn": 4, "aten.mm": 5}) == {
        "fused.rnn": 7,
        "aten.mm": 5,
    }
    plain = Measurement(modules={"Global": ModuleFlops(forward=5, by_op={"aten.mm": 5})})
    assert portable(plain) is plain


ATTENTION_TEST = """
import torch
import torch.nn.functional as F


def test_attention(flops):
    q = torch.randn(1, 2, 4, 4)
    with flops():
        F.scaled_dot_product_attention(q, q, q)
"""


@pytest.mark.slow
def test_a_committed_snapshot_with_backend_names_passes_and_update_rewrites_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_a=ATTENTION_TEST)
    runpytest_forked(pytester, "--flops-update").assert_outcomes(passed=1)
    path = pytester.path / "__flops__" / "test_a.py" / "test_attention.flops.json"
    portable_text = path.read_text()
    # B=1, H=2, S=4, D=4, forward only: 2*1*2*4*4*(4+4) = 512
    assert '"fused.scaled_dot_product_attention": 512' in portable_text
    # as pytest-flops 0.2 wrote it on a CPU
    path.write_text(
        portable_text.replace(
            "fused.scaled_dot_product_attention",
            "aten._scaled_dot_product_flash_attention_for_cpu",
        )
    )
    result = runpytest_forked(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["flops: 1 test passed, 0 failed, 0 written, 0 removed"])
    assert "_for_cpu" in path.read_text()  # a plain run writes nothing
    result = runpytest_forked(pytester, "--flops-update")
    result.stdout.fnmatch_lines(["flops: 0 tests passed, 0 failed, 1 written, 0 removed"])
    assert path.read_text() == portable_text


def test_a_syrupy_snapshot_with_backend_names_matches_the_portable_measurement() -> None:
    from pytest_flops import FlopsSnapshotExtension

    extension = FlopsSnapshotExtension()
    measured = on_cpu(Mixer(), torch.randn(1, 4, 8))
    # backend names are from before bytes were stored, and a syrupy snapshot without
    # bytes never matches one with them (tests/plugin/test_syrupy.py): the names alone here
    serialized = extension.serialize(measured.without_bytes())
    old = extension.serialize(as_recorded_on(measured, CUDA_NAMES))
    assert b"aten._cudnn_rnn" in old  # syrupy writes the bytes serialize returns
    assert extension.matches(serialized_data=serialized, snapshot_data=old)
    # another op's name is another op: no match
    changed = extension.serialize(as_recorded_on(measured, {**CUDA_NAMES, "fused.rnn": "aten.mm"}))
    assert not extension.matches(serialized_data=serialized, snapshot_data=changed)


def test_portable_names_keep_every_other_count() -> None:
    # a checkpointed row recorded with a backend kernel name: 512 forward, 1,280
    # backward and the forward again as recompute, 512
    row = ModuleFlops(
        forward=512,
        backward=1_280,
        recompute=512,
        by_op={
            "aten._scaled_dot_product_flash_attention_for_cpu": 1_024,
            "aten._scaled_dot_product_flash_attention_for_cpu_backward": 1_280,
        },
    )
    moved = portable(Measurement(modules={"Global": row}, world=None, tokens=8))
    assert moved.modules["Global"].recompute == 512
    assert moved.recompute == 512
    assert moved.tokens == 8
    assert moved.by_op == {
        "fused.scaled_dot_product_attention": 1_024,
        "fused.scaled_dot_product_attention_backward": 1_280,
    }
