"""The roofline time: per op, max(FLOPs / peak of its precision, bytes / bandwidth), summed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from pytest_flops import FlopCounterMode, Measurement, ModuleFlops, Traffic
from pytest_flops.roofline import GPUS, PRECISIONS, gpu


def measure(step: Callable[[], Any]) -> Measurement:
    with FlopCounterMode(display=False) as mode:
        step()
    return mode.to_measurement()


@pytest.fixture
def tf32_allowed(restored_precisions: None) -> None:
    torch.backends.cuda.matmul.allow_tf32 = True


def test_h100_sxm_has_its_dense_datasheet_peaks() -> None:
    h100 = gpu("h100-sxm")
    assert h100.peak("bf16") == 989.4e12
    assert h100.peak("fp32") == 67e12
    assert h100.peak("tf32") == 494.7e12
    assert h100.memory_bandwidth == 3.35e12


def test_every_gpu_has_a_peak_for_every_precision() -> None:
    assert set(GPUS) == {"h100-sxm", "h100-pcie", "h200", "a100-sxm", "l4", "b200", "mi300x"}
    for each in GPUS.values():
        assert set(each.peaks) == set(PRECISIONS), each.name
        assert all(peak > 0 for peak in each.peaks.values())


def test_an_unknown_gpu_is_an_error_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown GPU 'h100': expected one of h100-sxm, "):
        Measurement().roofline("h100")


def test_a_small_bf16_linear_is_memory_bound() -> None:
    x = torch.randn(64, 128, dtype=torch.bfloat16)
    linear = torch.nn.Linear(128, 32).to(torch.bfloat16)
    estimate = measure(lambda: linear(x)).roofline("h100-sxm")
    assert estimate.compute_seconds == 2 * 64 * 128 * 32 / 989.4e12
    assert estimate.memory_seconds == 28_736 / 3.35e12
    assert estimate.seconds == estimate.memory_seconds == estimate.memory_bound_seconds
    assert estimate.memory_bound_share == 1.0


def test_fp32_matmuls_run_at_the_fp32_peak_unless_tf32_is_allowed() -> None:
    a = torch.randn(1024, 1024, device="meta")
    flops = 2 * 1024**3
    assert measure(lambda: a @ a).roofline("h100-sxm").compute_seconds == flops / 67e12


def test_tf32_allowed_raises_the_peak_of_fp32_matmuls(tf32_allowed: None) -> None:
    a = torch.randn(1024, 1024, device="meta")
    measured = measure(lambda: a @ a)
    assert measured.modules["Global"].flops_by_precision == {"aten.mm": {"tf32": 2 * 1024**3}}
    assert measured.roofline("h100-sxm").compute_seconds == 2 * 1024**3 / 494.7e12


def test_each_op_takes_the_longer_of_its_compute_and_its_memory() -> None:
    a = torch.randn(4096, 4096, dtype=torch.bfloat16, device="meta")
    measured = measure(lambda: (a @ a) + a)
    estimate = measured.roofline("h100-sxm")
    mm_compute = 2 * 4096**3 / 989.4e12  # 139 µs, against 100 MB at 3.35 TB/s: 30 µs
    add_memory = 3 * 4096**2 * 2 / 3.35e12  # reads two, writes one: 30 µs, ~0 FLOPs
    assert estimate.seconds == pytest.approx(mm_compute + add_memory, rel=1e-12)
    assert estimate.memory_bound_seconds == pytest.approx(add_memory, rel=1e-12)
    assert estimate.memory_bound_share == pytest.approx(add_memory / estimate.seconds)
    # not the max of the two totals: the add's memory time adds to the matmul's compute
    assert estimate.seconds > max(estimate.compute_seconds, estimate.memory_seconds)


def test_communication_is_its_bytes_over_the_link_and_one_row_has_its_own() -> None:
    row = ModuleFlops(
        forward=1_000_000,
        by_op={"aten.mm": 1_000_000},  # no precision recorded: the FP32 peak
        communication={"_c10d_functional.all_reduce": Traffic(calls=1, bytes=9_000_000)},
    )
    measured = Measurement(modules={"Global": row, "Net": ModuleFlops()})
    estimate = measured.roofline("h100-sxm")
    assert estimate.communication_seconds == 9_000_000 / 900e9
    assert estimate.seconds == 1_000_000 / 67e12 + 9_000_000 / 900e9
    assert measured.roofline("h100-sxm", module="Net").seconds == 0.0
