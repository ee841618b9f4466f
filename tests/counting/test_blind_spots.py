"""Ops that used to count 0: each formula against a count derived by hand."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from pytest_flops import FlopCounterMode, Measurement
from pytest_flops.counting.formulas import FLOP_FORMULAS

A = torch.randn(5, 5)
SPD = A @ A.T + 5 * torch.eye(5)  # symmetric positive definite
B = torch.randn(5, 3)  # three right-hand sides
TALL = torch.randn(6, 4)


def measure(step: Callable[[], Any]) -> Measurement:
    with FlopCounterMode(display=False) as mode:
        step()
    return mode.to_measurement()


def counted(step: Callable[[], Any]) -> dict[str, int]:
    measured = measure(step)
    assert measured.unsupported == {}
    return measured.by_op


# -- products shaped like matmuls ------------------------------------------------------------


def test_pairwise_distances() -> None:
    # 2 batches of 5 and 4 points in 3 coordinates: 2 * 2*5*4*3 = 240, for every p
    x1, x2 = torch.randn(2, 5, 3), torch.randn(2, 4, 3)
    for p in (1.0, 2.0, 3.0):
        assert counted(functools.partial(torch.cdist, x1, x2, p=p)) == {"aten._cdist_forward": 240}
    x1 = torch.randn(2, 5, 3, requires_grad=True)
    step = measure(lambda: torch.cdist(x1, torch.randn(2, 4, 3), p=1.0).sum().backward())
    assert (step.forward, step.backward) == (240, 240)  # x1's gradient, the same size
    # pdist of 5 points in 3 coordinates: 10 pairs * 2*3 = 60
    assert counted(lambda: torch.pdist(torch.randn(5, 3))) == {"aten._pdist_forward": 60}


def test_bilinear() -> None:
    # x (2, 3), W (5, 3, 4), y (2, 4): every output (b, o) is x_b W_o y_b, 2*2*5*3*4 = 240
    x, y = torch.randn(2, 3, requires_grad=True), torch.randn(2, 4)
    weight = torch.randn(5, 3, 4, requires_grad=True)
    step = measure(lambda: F.bilinear(x, y, weight).sum().backward())
    # backward: x's and W's gradients, each a triple product of the same terms
    assert step.by_op == {"aten._trilinear": 3 * 240}
    assert (step.forward, step.backward) == (240, 480)


def test_addr_is_an_outer_product_plus_a_matrix() -> None:
    # (3,) ⊗ (4,): a multiply-add per entry of the (3, 4) result, 2*3*4 = 24
    bias, a, b = torch.randn(3, 4), torch.randn(3), torch.randn(4)
    assert counted(lambda: torch.addr(bias, a, b)) == {"aten.addr": 24}
    assert counted(lambda: torch.outer(a, b)) == {}  # a broadcast multiply: elementwise


# -- Fourier transforms ----------------------------------------------------------------------


def test_ffts_count_5_n_log2_n_per_complex_transform() -> None:
    # fft of 2 rows of 8 points: 2 * 5*8*3 = 240; rfft and irfft of 8 real points: half
    signal = torch.randn(2, 8, dtype=torch.complex64)
    assert counted(lambda: torch.fft.fft(signal)) == {"aten._fft_c2c": 240}
    assert counted(lambda: torch.fft.rfft(torch.randn(2, 8))) == {"aten._fft_r2c": 120}
    halves = torch.randn(2, 5, dtype=torch.complex64)  # irfft gives 2*(5-1) = 8 points
    assert counted(lambda: torch.fft.irfft(halves)) == {"aten._fft_c2r": 120}
    # fft2 over (4, 8): N = 32 points, 2 transforms: 2 * 5*32*5 = 1,600
    assert counted(lambda: torch.fft.fft2(torch.randn(2, 4, 8))) == {"aten._fft_c2c": 1600}
    # 6 points: log2(6) is irrational; 5*6*log2(6) = 77.549... rounds to 78
    assert counted(lambda: torch.fft.fft(torch.randn(6, dtype=torch.complex64))) == {
        "aten._fft_c2c": 78
    }


# -- linear algebra --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "op", "flops"),
    [
        # LU of 5x5: 2*125/3 = 83 (rounded down), then 2*25 per right-hand side, 3 of them
        (lambda: torch.linalg.solve(A, B), "aten._linalg_solve_ex", 83 + 150),
        (lambda: torch.linalg.lu_factor(A), "aten.linalg_lu_factor_ex", 83),
        (lambda: torch.linalg.det(A), "aten._linalg_det", 83),
        (lambda: torch.linalg.slogdet(A), "aten._linalg_slogdet", 83),
        # torch inverts by solving against the identity: LU + 2*5*5*5 = 83 + 250
        (lambda: torch.linalg.inv(A), "aten.linalg_inv_ex", 83 + 250),
        (lambda: torch.linalg.cholesky(SPD), "aten.linalg_cholesky_ex", 125 // 3),  # n³/3
        (lambda: torch.cholesky_solve(B, SPD), "aten.cholesky_solve", 150),  # 2*25 * 3
        (lambda: torch.cholesky_inverse(SPD), "aten.cholesky_inverse", 250 // 3),  # 2n³/3
        (
            lambda: torch.linalg.solve_triangular(torch.triu(A), B, upper=True),
            "aten.linalg_solve_triangular",
            75,  # 25 per right-hand side
        ),
        # 6x4 QR: geqrf 2*6*16 - 2*64/3 = 192 - 42.67 = 149; forming the reduced Q
        # (6x4, 4 reflectors): 4*6*4*4 - 2*(6+4)*16 + 4*64/3 = 384 - 320 + 85.33 = 149
        (lambda: torch.linalg.qr(TALL, mode="r"), "aten.linalg_qr", 149),
        (lambda: torch.linalg.qr(TALL), "aten.linalg_qr", 149 + 149),
        # complete Q (6x6): 4*6*6*4 - 2*12*16 + 85.33 = 576 - 384 + 85.33 = 277
        (lambda: torch.linalg.qr(TALL, mode="complete"), "aten.linalg_qr", 149 + 277),
        (lambda: torch.geqrf(TALL), "aten.geqrf", 149),
        # SVD of 6x4: values 4*6*16 - 4*64/3 = 384 - 85.33 = 298; reduced 14*6*16 + 8*64
        # = 1344 + 512 = 1856; full 4*36*4 + 8*6*16 + 9*64 = 576 + 768 + 576 = 1920.
        # (svdvals and eigvalsh, counted, ask the kernel for the vectors too: what ran)
        (lambda: torch.ops.aten._linalg_svd(TALL, False, False), "aten._linalg_svd", 298),
        (lambda: torch.linalg.svd(TALL, full_matrices=False), "aten._linalg_svd", 1856),
        (lambda: torch.linalg.svd(TALL), "aten._linalg_svd", 1920),
        # eigh of 5x5: values 4*125/3 = 166; with vectors 9*125 = 1125
        (lambda: torch.ops.aten._linalg_eigh(SPD, "L", False), "aten._linalg_eigh", 166),
        (lambda: torch.linalg.eigh(SPD), "aten._linalg_eigh", 1125),
        (lambda: torch.linalg.eig(A), "aten.linalg_eig", 25 * 125),  # 25n³
        # least squares, 6x4 by QR (149), then per right-hand side Qᵀb 4*6*4 - 2*16 = 64
        # and back substitution 16: 2 of them, 160
        (lambda: torch.linalg.lstsq(TALL, torch.randn(6, 2)), "aten.linalg_lstsq", 149 + 160),
    ],
)
def test_linear_algebra(step: Callable[[], Any], op: str, flops: int) -> None:
    assert counted(step) == {op: flops}


def test_a_batch_of_matrices_counts_each() -> None:
    batch = torch.randn(3, 5, 5)
    assert counted(lambda: torch.linalg.lu_factor(batch)) == {"aten.linalg_lu_factor_ex": 3 * 83}


def test_a_solve_backward_counts_its_own_solves_and_matmuls() -> None:
    a = torch.randn(5, 5, requires_grad=True)
    step = measure(lambda: torch.linalg.solve(a, B).sum().backward())
    # backward: one more solve with the stored LU (2*25*3 = 150), and grad_A = -grad_B Xᵀ,
    # an mm of (5, 3) @ (3, 5) = 150
    assert step.by_op == {"aten._linalg_solve_ex": 233, "aten.linalg_lu_solve": 150, "aten.mm": 150}


# -- attention of variable-length sequences ----------------------------------------------------


def test_varlen_attention_counts_each_sequence() -> None:
    # lengths 128 and 64, 8 heads of 64: QKᵀ and PV per sequence, 4*8*64*(128² + 64²)
    q = torch.randn(192, 8, 64)
    lengths = torch.tensor([0, 128, 192], dtype=torch.int32)
    forward = FLOP_FORMULAS["torch_attn::_varlen_attn"]
    backward = FLOP_FORMULAS["torch_attn::_varlen_attn_backward"]
    assert forward((q, q, q, lengths, lengths, 128, 128), {}, None) == 41_943_040
    assert forward((q, q, q, lengths, None, 128, 128), {}, None) == 41_943_040  # keys cut alike
    # the backward recomputes QKᵀ: 2.5 times
    assert backward((q, q, q, q, q, None, lengths, lengths, 128, 128), {}, None) == 104_857_600


def test_varlen_attention_on_meta_counts_every_sequence_at_the_longest_length() -> None:
    varlen = pytest.importorskip("torch.nn.attention.varlen")
    q = torch.randn(192, 8, 64, device="meta", requires_grad=True)
    lengths = torch.tensor([0, 128, 192], dtype=torch.int32, device="meta")
    step = measure(lambda: varlen.varlen_attn(q, q, q, lengths, lengths, 128, 128).sum().backward())
    # offsets unreadable: an upper bound, 2 sequences of 128, 4*8*64*2*128² = 67,108,864
    assert step.by_op == {
        "torch_attn._varlen_attn": 67_108_864,
        "torch_attn._varlen_attn_backward": 167_772_160,
    }


# -- torchvision -------------------------------------------------------------------------------


def test_torchvision_ops() -> None:
    ops = pytest.importorskip("torchvision.ops")
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    weight = torch.randn(6, 4, 3, 3, requires_grad=True)
    offsets = torch.zeros(1, 2 * 3 * 3, 6, 6, requires_grad=True)
    step = measure(lambda: ops.deform_conv2d(x, offsets, weight).sum().backward())
    # the convolution of the same shapes: 2 * 1*6*6 positions * 6 out * 4*3*3 = 15,552;
    # backward, the input and weight gradients: twice
    assert step.by_op == {
        "torchvision.deform_conv2d": 15_552,
        "torchvision._deform_conv2d_backward": 31_104,
    }
    assert step.unsupported == {}
    boxes = [torch.tensor([[0.0, 0.0, 4.0, 4.0]])]
    pooled = measure(
        lambda: (
            ops.roi_align(x, boxes, 2).sum().backward(),
            ops.roi_pool(x, boxes, 2),
            ops.nms(torch.tensor([[0, 0, 1, 1.0], [0, 0, 1, 1.1]]), torch.tensor([1.0, 0.9]), 0.5),
        )
    )
    assert (pooled.total, pooled.unsupported) == (0, {})  # interpolation, pooling: 0


# -- tensor subclasses -------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype")
@pytest.mark.parametrize("inference", [False, True], ids=["grad", "inference"])
def test_a_jagged_linear_counts_as_the_linear_of_its_values(inference: bool) -> None:
    # The jagged tensor runs linear and linear_backward itself, on its packed values
    # (3 + 5 = 8 tokens of 8 features); decomposed by the mode, linear crashed.
    tokens = torch.nested.nested_tensor(
        [torch.randn(3, 8), torch.randn(5, 8)], layout=torch.jagged, requires_grad=True
    )
    linear = torch.nn.Linear(8, 4)
    if inference:
        with torch.inference_mode():
            forward = measure(lambda: linear(tokens))
    else:
        forward = measure(lambda: linear(tokens))
    # addmm(bias, values, W.t()): 2*8*8*4 = 512 FLOPs; reads 8*8 + 4*8 + 4, writes 8*4,
    # fp32: (64 + 32 + 4 + 32) * 4 = 528 B
    assert (forward.by_op, forward.unsupported) == ({"aten.addmm": 512}, {})
    assert forward.bytes_by_op == {"aten.addmm": 528}
    step = measure(lambda: linear(tokens).values().sum().backward())
    # backward: the input gradient (8x4 @ 4x8) and the weight's (4x8 @ 8x8), 512 each
    assert (step.by_op, step.unsupported) == ({"aten.addmm": 512, "aten.mm": 1_024}, {})
