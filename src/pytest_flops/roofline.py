"""A roofline time on a named GPU: each op's FLOPs at the peak of its precision, or its
bytes at the memory bandwidth, whichever takes longer.

``seconds`` is the sum over ops of ``max(FLOPs / peak, bytes / bandwidth)``,
plus the communication bytes over the GPU's link bandwidth. The figures are
datasheet peaks without sparsity (docs/roofline.md cites each one). It is a
model of eager, unfused traffic with no caches, no launch overhead and no
overlap: for comparing two versions of one step, not for predicting wall time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # measurement imports this module
    from pytest_flops.measurement import ModuleFlops

__all__ = ["GPUS", "PRECISIONS", "Gpu", "OpCost", "Roofline", "estimate", "gpu", "row_roofline"]

PRECISIONS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")
"""The precisions FLOPs are counted in (``counting/precision.py`` names them)."""

UNKNOWN_PRECISION = "fp32"
"""The peak of FLOPs recorded without a precision (a hand-made or format 3 measurement)."""

_T = 1e12  # TFLOP/s, TB/s
_G = 1e9  # GB/s


@dataclass(frozen=True, kw_only=True)
class Gpu:
    """One GPU's dense datasheet peaks (FLOP/s per precision) and bandwidths (bytes/s)."""

    name: str
    peaks: Mapping[str, float]
    memory_bandwidth: float
    link_bandwidth: float  # between GPUs: NVLink, Infinity Fabric or PCIe

    def peak(self, precision: str) -> float:
        return self.peaks[precision]


def _peaks(
    *, fp64: float, fp32: float, tf32: float, bf16: float, fp8: float, int8: float
) -> dict[str, float]:
    """TFLOP/s per precision (fp16 runs at the bf16 rate on every GPU here)."""
    return {
        "fp64": fp64 * _T,
        "fp32": fp32 * _T,
        "tf32": tf32 * _T,
        "bf16": bf16 * _T,
        "fp16": bf16 * _T,
        "fp8": fp8 * _T,
        "int8": int8 * _T,
    }


_HOPPER_SXM = _peaks(fp64=67, fp32=67, tf32=494.7, bf16=989.4, fp8=1978.9, int8=1978.9)

GPUS: dict[str, Gpu] = {
    gpu.name: gpu
    for gpu in (
        Gpu(
            name="h100-sxm",
            peaks=_HOPPER_SXM,
            memory_bandwidth=3.35 * _T,
            link_bandwidth=900 * _G,
        ),
        Gpu(
            name="h100-pcie",
            peaks=_peaks(fp64=51, fp32=51, tf32=378, bf16=756.5, fp8=1513, int8=1513),
            memory_bandwidth=2.0 * _T,
            link_bandwidth=128 * _G,
        ),
        Gpu(name="h200", peaks=_HOPPER_SXM, memory_bandwidth=4.8 * _T, link_bandwidth=900 * _G),
        Gpu(
            name="a100-sxm",
            # no FP8 units: FP8 data runs at the BF16 rate
            peaks=_peaks(fp64=19.5, fp32=19.5, tf32=156, bf16=312, fp8=312, int8=624),
            memory_bandwidth=2.039 * _T,
            link_bandwidth=600 * _G,
        ),
        Gpu(
            name="l4",
            peaks=_peaks(fp64=0.47, fp32=30.3, tf32=60, bf16=121, fp8=242.5, int8=242.5),
            memory_bandwidth=0.3 * _T,
            link_bandwidth=64 * _G,
        ),
        Gpu(
            name="b200",
            peaks=_peaks(fp64=40, fp32=80, tf32=1100, bf16=2250, fp8=4500, int8=4500),
            memory_bandwidth=8.0 * _T,
            link_bandwidth=1800 * _G,
        ),
        Gpu(
            name="mi300x",
            peaks=_peaks(fp64=163.4, fp32=163.4, tf32=653.7, bf16=1307.4, fp8=2614.9, int8=2614.9),
            memory_bandwidth=5.3 * _T,
            link_bandwidth=896 * _G,
        ),
    )
}


def gpu(name: str) -> Gpu:
    """The GPU called ``name``; an unknown name is a ValueError listing the known ones."""
    try:
        return GPUS[name]
    except KeyError:
        known = ", ".join(GPUS)
        raise ValueError(f"unknown GPU {name!r}: expected one of {known}") from None


@dataclass(frozen=True, kw_only=True)
class OpCost:
    """What one op (all its calls in a row) asks of the GPU."""

    flops_by_precision: Mapping[str, int]
    bytes: int


@dataclass(frozen=True, kw_only=True)
class Roofline:
    """The roofline estimate of one measurement (or module row) on one GPU, in seconds."""

    gpu: str
    seconds: float  # sum over ops of max(compute, memory), plus communication
    compute_seconds: float  # every op's FLOPs at its peak
    memory_seconds: float  # every op's bytes at the memory bandwidth
    communication_seconds: float  # the collectives' bytes at the link bandwidth
    memory_bound_seconds: float  # the part of ``seconds`` spent in memory-bound ops

    @property
    def memory_bound_share(self) -> float:
        """The share of the ops' time (communication apart) in ops bound by memory."""
        ops = self.seconds - self.communication_seconds
        return self.memory_bound_seconds / ops if ops else 0.0


def estimate(ops: Iterable[OpCost], *, communication_bytes: int, on: Gpu) -> Roofline:
    """Sum over ops of max(FLOPs / peak, bytes / bandwidth), plus communication."""
    compute_total = memory_total = seconds = memory_bound = 0.0
    for op in ops:
        compute = sum(
            flops / on.peak(precision) for precision, flops in op.flops_by_precision.items()
        )
        memory = op.bytes / on.memory_bandwidth
        compute_total += compute
        memory_total += memory
        seconds += max(compute, memory)
        if memory > compute:
            memory_bound += memory
    communication = communication_bytes / on.link_bandwidth
    return Roofline(
        gpu=on.name,
        seconds=seconds + communication,
        compute_seconds=compute_total,
        memory_seconds=memory_total,
        communication_seconds=communication,
        memory_bound_seconds=memory_bound,
    )


def row_roofline(row: ModuleFlops, on: str | Gpu) -> Roofline:
    """The roofline estimate of one module row (``Measurement.roofline``'s)."""
    device = on if isinstance(on, Gpu) else gpu(on)
    ops = []
    for op in dict.fromkeys([*row.by_op, *row.bytes_by_op]):
        precisions = dict(row.flops_by_precision.get(op, {}))
        unattributed = row.by_op.get(op, 0) - sum(precisions.values())
        if unattributed > 0:
            precisions[UNKNOWN_PRECISION] = precisions.get(UNKNOWN_PRECISION, 0) + unattributed
        ops.append(OpCost(flops_by_precision=precisions, bytes=row.bytes_by_op.get(op, 0)))
    communication = sum(traffic.bytes for traffic in row.communication.values())
    return estimate(ops, communication_bytes=communication, on=device)
