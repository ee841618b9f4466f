"""The precision an op's FLOPs run at, from PyTorch's settings, old API and new."""

from collections.abc import Callable
from typing import Any

import pytest
import torch

from pytest_flops import FlopCounterMode
from tests.helpers import FP32_PRECISION_SETTINGS, precisions_restored

pytestmark = pytest.mark.usefixtures("restored_precisions")


def precisions(step: Callable[[], Any]) -> dict[str, dict[str, int]]:
    with FlopCounterMode(display=False) as mode:
        step()
    return {
        op: dict(p) for op, p in mode.to_measurement().modules["Global"].flops_by_precision.items()
    }


def matmul_and_conv() -> None:
    torch.randn(64, 128) @ torch.randn(128, 32)
    torch.nn.functional.conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3))


# mm: 2*64*128*32 = 524,288; convolution: 2 * (1*3*3*3 outputs) * (2*3*3 taps) = 972
MM, CONV = 524_288, 972


def test_by_default_matmuls_run_in_fp32_and_convolutions_in_tf32() -> None:
    # cuDNN allows TF32 for convolutions by default, cuBLAS not for matmuls
    assert precisions(matmul_and_conv) == {
        "aten.mm": {"fp32": MM},
        "aten.convolution": {"tf32": CONV},
    }


@pytest.mark.parametrize(
    "settings",
    [
        {(torch.backends.cuda.matmul, "fp32_precision"): "tf32"},
        {  # inherited by matmuls set to "none" (the legacy setters set them explicitly)
            (torch.backends.cuda.matmul, "fp32_precision"): "none",
            (torch.backends, "fp32_precision"): "tf32",
        },
    ],
    ids=["cuda.matmul", "the generic setting"],
)
def test_the_new_api_turns_tf32_on_without_breaking_the_count(
    settings: dict[tuple[object, str], str],
) -> None:
    # torch raises on the old getters once the new fp32_precision API was used
    for (backend, name), value in settings.items():
        setattr(backend, name, value)
    assert precisions(matmul_and_conv)["aten.mm"] == {"tf32": MM}


def test_the_new_api_turns_tf32_off_for_convolutions() -> None:
    FP32_PRECISION_SETTINGS[3].fp32_precision = "ieee"  # torch.backends.cudnn.conv
    assert precisions(matmul_and_conv) == {
        "aten.mm": {"fp32": MM},
        "aten.convolution": {"fp32": CONV},
    }


def test_the_old_api_still_counts() -> None:
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = False
    assert precisions(matmul_and_conv) == {
        "aten.mm": {"tf32": MM},
        "aten.convolution": {"fp32": CONV},
    }


def test_every_setting_a_test_changes_is_restored_after_it() -> None:
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    fp32_precisions = [setting.fp32_precision for setting in FP32_PRECISION_SETTINGS]
    with precisions_restored():
        torch.set_float32_matmul_precision("high")  # old and new API mixed, as tests do
        torch.backends.cudnn.allow_tf32 = False
        FP32_PRECISION_SETTINGS[3].fp32_precision = "tf32"  # torch.backends.cudnn.conv
    # the old getters read the old setters' state too: they raised on a mixed one
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == before
    assert [setting.fp32_precision for setting in FP32_PRECISION_SETTINGS] == fp32_precisions
