"""FLOP counts of PyTorch code as a regression-tested property."""

from pytest_flops.counter import FlopCounterMode
from pytest_flops.dry_run import count
from pytest_flops.fixture import Flops
from pytest_flops.formulas import register_flop_formula
from pytest_flops.measurement import Measurement, ModuleFlops, SnapshotFormatError
from pytest_flops.records import MeasurementRecord, Status
from pytest_flops.snapshot import FlopsSnapshot, FlopsSnapshotExtension
from pytest_flops.units import format_flops, parse_flops

__version__ = "0.1.0"

__all__ = [
    "FlopCounterMode",
    "Flops",
    "FlopsSnapshot",
    "FlopsSnapshotExtension",
    "Measurement",
    "MeasurementRecord",
    "ModuleFlops",
    "SnapshotFormatError",
    "Status",
    "__version__",
    "count",
    "format_flops",
    "parse_flops",
    "register_flop_formula",
]
