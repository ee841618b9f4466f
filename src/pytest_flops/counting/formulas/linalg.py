"""Linear-algebra kernels, by the standard operation counts of their algorithms.

Per matrix, leading terms, times the batch; ``big`` and ``k`` are the larger
and smaller of a matrix's two dimensions. Sources: LAPACK Working Note 41
(Blackford and Dongarra, *Installation Guide for LAPACK*, table of operation
counts) for LU, Cholesky, triangular solves and Householder QR; Golub and Van
Loan, *Matrix Computations* (4th ed.), §5.3.5 (least squares by QR), §5.4.5
(Golub-Reinsch SVD), §7.5.6 (Francis QR for eig) and §8.3 (symmetric QR for
eigh). Each count is rounded down to an integer.

=========================================  =========================================
op                                         FLOPs per matrix
=========================================  =========================================
LU (lu_factor, lu, det, slogdet)           big·k² - k³/3  (2n³/3 square)
LU solve, per right-hand side              2n²
solve                                      LU + 2n² per right-hand side
inv                                        LU + 2n³: torch solves against the identity
Cholesky                                   n³/3
Cholesky solve, per right-hand side        2n²
Cholesky inverse                           2n³/3
triangular solve, per right-hand side      n²
QR: R only (geqrf)                         2·big·k² - 2k³/3
QR: forming Q with q columns (orgqr)       4·m·q·k - 2(m + q)k² + 4k³/3
apply Q to c vectors (ormqr)               4·m·c·k - 2·c·k²
least squares, per right-hand side         QR + 4mn - 2n² + n²
SVD: values only                           4·big·k² - 4k³/3
SVD: U₁, Σ, V (reduced)                    14·big·k² + 8k³
SVD: U, Σ, V (full)                        4·big²·k + 8·big·k² + 9k³
eigh: values / values and vectors          4n³/3 / 9n³
eig: values / values and vectors           10n³ / 25n³
=========================================  =========================================

A backward pass runs matmuls and solves of its own, which count as they run.
"""

from __future__ import annotations

from math import prod
from typing import Any

import torch

from pytest_flops.counting.formulas.registry import Shape, register_flop_formula

aten = torch.ops.aten


def _batch(shape: Shape) -> int:
    return prod(shape[:-2])


def _sides(shape: Shape) -> tuple[int, int, int, int]:
    """(m, n, the larger, the smaller) of a matrix shape's last two dimensions."""
    m, n = shape[-2], shape[-1]
    return m, n, max(m, n), min(m, n)


def lu_flop_count(shape: Shape) -> int:
    _, _, big, k = _sides(shape)
    return _batch(shape) * ((3 * big * k * k - k**3) // 3)


def _right_hand_sides(a_shape: Shape, b_shape: Shape, *, left: bool = True) -> int:
    """How many vectors a solve with ``A`` solves for, over ``B``'s batch too."""
    if len(b_shape) == len(a_shape) - 1:  # a batch of vectors
        return prod(b_shape[:-1])
    return prod(b_shape[:-2]) * (b_shape[-1] if left else b_shape[-2])


def _orgqr(m: int, q: int, k: int) -> int:
    return (12 * m * q * k - 6 * (m + q) * k * k + 4 * k**3) // 3


def _geqrf(shape: Shape) -> int:
    _, _, big, k = _sides(shape)
    return (6 * big * k * k - 2 * k**3) // 3


@register_flop_formula(
    [aten.linalg_lu_factor_ex, aten.linalg_lu, aten._linalg_det, aten._linalg_slogdet]
)
def lu_flop(a_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return lu_flop_count(a_shape)


@register_flop_formula(aten.linalg_lu_solve)
def lu_solve_flop(
    lu_shape: Shape, _pivots: Shape, b_shape: Shape, *, left: bool = True, **kwargs: Any
) -> int:
    n = lu_shape[-1]
    return 2 * n * n * _right_hand_sides(lu_shape, b_shape, left=left)


@register_flop_formula(aten._linalg_solve_ex)
def solve_flop(a_shape: Shape, b_shape: Shape, *, left: bool = True, **kwargs: Any) -> int:
    n = a_shape[-1]
    return lu_flop_count(a_shape) + 2 * n * n * _right_hand_sides(a_shape, b_shape, left=left)


@register_flop_formula(aten.linalg_inv_ex)
def inv_flop(a_shape: Shape, *args: Any, **kwargs: Any) -> int:
    n = a_shape[-1]
    return lu_flop_count(a_shape) + _batch(a_shape) * 2 * n**3


@register_flop_formula(aten.linalg_cholesky_ex)
def cholesky_flop(a_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return _batch(a_shape) * (a_shape[-1] ** 3 // 3)


@register_flop_formula(aten.cholesky_solve)
def cholesky_solve_flop(b_shape: Shape, l_shape: Shape, *args: Any, **kwargs: Any) -> int:
    n = l_shape[-1]
    return 2 * n * n * _right_hand_sides(l_shape, b_shape)


@register_flop_formula(aten.cholesky_inverse)
def cholesky_inverse_flop(l_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return _batch(l_shape) * (2 * l_shape[-1] ** 3 // 3)


@register_flop_formula(aten.linalg_solve_triangular)
def solve_triangular_flop(
    a_shape: Shape, b_shape: Shape, *, left: bool = True, **kwargs: Any
) -> int:
    n = a_shape[-1]
    return n * n * _right_hand_sides(a_shape, b_shape, left=left)


@register_flop_formula(aten.triangular_solve)
def triangular_solve_flop(b_shape: Shape, a_shape: Shape, *args: Any, **kwargs: Any) -> int:
    n = a_shape[-1]
    return n * n * _right_hand_sides(a_shape, b_shape)


@register_flop_formula(aten.geqrf)
def geqrf_flop(a_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return _batch(a_shape) * _geqrf(a_shape)


@register_flop_formula(aten.linalg_qr)
def qr_flop(a_shape: Shape, mode: str = "reduced", *args: Any, **kwargs: Any) -> int:
    m, _, _, k = _sides(a_shape)
    q_columns = {"r": 0, "reduced": k, "complete": m}[mode]
    forming_q = _orgqr(m, q_columns, k) if q_columns else 0
    return _batch(a_shape) * (_geqrf(a_shape) + forming_q)


@register_flop_formula(aten.linalg_householder_product)
def householder_product_flop(a_shape: Shape, tau_shape: Shape, *args: Any, **kwargs: Any) -> int:
    m, n = a_shape[-2:]
    return _batch(a_shape) * _orgqr(m, n, tau_shape[-1])


@register_flop_formula(aten.ormqr)
def ormqr_flop(
    a_shape: Shape, tau_shape: Shape, c_shape: Shape, left: bool = True, *args: Any, **kwargs: Any
) -> int:
    k = tau_shape[-1]
    m, vectors = (c_shape[-2], c_shape[-1]) if left else (c_shape[-1], c_shape[-2])
    return prod(c_shape[:-2]) * (4 * m * vectors * k - 2 * vectors * k * k)


@register_flop_formula(aten.linalg_lstsq)
def lstsq_flop(a_shape: Shape, b_shape: Shape, *args: Any, **kwargs: Any) -> int:
    _, _, big, k = _sides(a_shape)
    per_vector = 4 * big * k - 2 * k * k + k * k  # apply Qᵀ, then back substitution
    return _batch(a_shape) * _geqrf(a_shape) + per_vector * _right_hand_sides(a_shape, b_shape)


@register_flop_formula(aten._linalg_svd)
def svd_flop(
    a_shape: Shape, full_matrices: bool = False, compute_uv: bool = True, **kwargs: Any
) -> int:
    _, _, big, k = _sides(a_shape)
    if not compute_uv:
        per_matrix = (12 * big * k * k - 4 * k**3) // 3
    elif full_matrices:
        per_matrix = 4 * big * big * k + 8 * big * k * k + 9 * k**3
    else:
        per_matrix = 14 * big * k * k + 8 * k**3
    return _batch(a_shape) * per_matrix


@register_flop_formula(aten._linalg_eigh)
def eigh_flop(a_shape: Shape, uplo: str = "L", compute_v: bool = True, **kwargs: Any) -> int:
    n = a_shape[-1]
    return _batch(a_shape) * (9 * n**3 if compute_v else (4 * n**3) // 3)


@register_flop_formula(aten.linalg_eig)
def eig_flop(a_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return _batch(a_shape) * 25 * a_shape[-1] ** 3


@register_flop_formula(aten.linalg_eigvals)
def eigvals_flop(a_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return _batch(a_shape) * 10 * a_shape[-1] ** 3
