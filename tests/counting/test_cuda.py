"""CUDA kernels count what the formulas and the CPU count: each check of cuda_checks.py.

Without CUDA the ``cuda`` cases skip; the ``cpu`` cases run the same checks on the
CPU's kernels, which tests the checks themselves.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from tests.counting.cuda_checks import CHECKS, Report

DEVICES = [
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ),
    pytest.param("cpu", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_counts_equal_the_formula_and_the_cpu(
    check: Callable[[Report, str], None], device: str
) -> None:
    report = Report()
    check(report, device)
    assert report.failures == 0, "\n".join(report.lines)
    assert report.lines, "the check checked nothing"
