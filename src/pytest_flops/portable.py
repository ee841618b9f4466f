"""Device-independent names for the fused kernels that each backend picks for itself.

The same ``F.scaled_dot_product_attention`` runs as
``aten._scaled_dot_product_flash_attention_for_cpu`` on a CPU and as the flash,
memory-efficient or cuDNN kernel on CUDA; an LSTM runs as ``aten.mkldnn_rnn_layer``
on a CPU and as ``aten._cudnn_rnn`` on CUDA. Their FLOPs are the same, so a
:class:`~pytest_flops.Measurement` stores them under one name each, and a
snapshot recorded on one device passes on another. Snapshots written before
hold the backend names: they are read as the portable ones, and the next
``--flops-update`` rewrites them. :class:`~pytest_flops.FlopCounterMode`'s own
tables, torch's drop-in, keep torch's names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pytest_flops.measurement import Measurement

__all__ = ["PORTABLE_NAMES", "portable", "portable_ops"]

ATTENTION = "fused.scaled_dot_product_attention"
ATTENTION_BACKWARD = "fused.scaled_dot_product_attention_backward"
RNN = "fused.rnn"
RNN_BACKWARD = "fused.rnn_backward"

_ATTENTION_KERNELS = (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
)
_RNN_KERNELS = ("mkldnn_rnn_layer", "_cudnn_rnn", "miopen_rnn")

PORTABLE_NAMES: Mapping[str, str] = {
    **{f"aten.{kernel}": ATTENTION for kernel in _ATTENTION_KERNELS},
    **{f"aten.{kernel}_backward": ATTENTION_BACKWARD for kernel in _ATTENTION_KERNELS},
    **{f"aten.{kernel}": RNN for kernel in _RNN_KERNELS},
    **{f"aten.{kernel}_backward": RNN_BACKWARD for kernel in _RNN_KERNELS},
}
"""A backend's kernel name -> the name stored for it, whatever the device."""


def portable_ops(by_op: Mapping[str, int]) -> dict[str, int]:
    """``by_op`` with backend kernels under their portable names (two of one name add up)."""
    named: dict[str, int] = {}
    for op, flops in by_op.items():
        name = PORTABLE_NAMES.get(op, op)
        named[name] = named.get(name, 0) + flops
    return named


def portable(measurement: Measurement) -> Measurement:
    """The same counts with every row's backend kernels under their portable names
    (FLOPs, bytes accessed and FLOPs by precision alike)."""
    if not any(
        op in PORTABLE_NAMES
        for row in measurement.modules.values()
        for op in (*row.by_op, *row.bytes_by_op, *row.flops_by_precision)
    ):
        return measurement
    # replace(): every other field (recompute, world, tokens...) stays as it was
    modules = {
        path: replace(
            row,
            by_op=portable_ops(row.by_op),
            bytes_by_op=portable_ops(row.bytes_by_op),
            flops_by_precision=_portable_precisions(row.flops_by_precision),
        )
        for path, row in measurement.modules.items()
    }
    return replace(measurement, modules=modules)


def _portable_precisions(
    by_op: Mapping[str, Mapping[str, int]],
) -> dict[str, dict[str, int]]:
    named: dict[str, dict[str, int]] = {}
    for op, precisions in by_op.items():
        counts = named.setdefault(PORTABLE_NAMES.get(op, op), {})
        for precision, flops in precisions.items():
            counts[precision] = counts.get(precision, 0) + flops
    return named
