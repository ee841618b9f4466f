"""FLOP counts of PyTorch code as a regression-tested property."""

from pytest_flops.counter import FlopCounterMode
from pytest_flops.formulas import register_flop_formula
from pytest_flops.measurement import Measurement, ModuleFlops, SnapshotFormatError

__version__ = "0.1.0"

__all__ = [
    "FlopCounterMode",
    "Measurement",
    "ModuleFlops",
    "SnapshotFormatError",
    "__version__",
    "register_flop_formula",
]
