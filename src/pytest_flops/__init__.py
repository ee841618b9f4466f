"""FLOP counts of PyTorch code as a regression-tested property.

Importing the package imports nothing else: pytest loads it at start-up as a
plugin in every session, and a session that measures nothing should not pay for
torch or for the measurement layer. Every public name is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_flops.counting.counter import FlopCounterMode
    from pytest_flops.counting.distributed import fake_world
    from pytest_flops.counting.dry_run import count
    from pytest_flops.counting.fixture import Flops
    from pytest_flops.counting.formulas import register_flop_formula, scoped_flop_formula
    from pytest_flops.measurement import Measurement, ModuleFlops, Traffic, World
    from pytest_flops.plugin.syrupy_extension import FlopsSnapshotExtension
    from pytest_flops.plugin.testcase import FlopsTestCase
    from pytest_flops.reports.records import Status
    from pytest_flops.units import format_bytes, format_flops, parse_bytes, parse_flops
    from pytest_flops.validation import SnapshotFormatError

__version__ = "0.2.0"

__all__ = [
    "FlopCounterMode",
    "Flops",
    "FlopsSnapshotExtension",
    "FlopsTestCase",
    "Measurement",
    "ModuleFlops",
    "SnapshotFormatError",
    "Status",
    "Traffic",
    "World",
    "__version__",
    "count",
    "fake_world",
    "format_bytes",
    "format_flops",
    "parse_bytes",
    "parse_flops",
    "register_flop_formula",
    "scoped_flop_formula",
]

_IMPORTED_ON_USE = {
    "Measurement": "pytest_flops.measurement",
    "ModuleFlops": "pytest_flops.measurement",
    "Traffic": "pytest_flops.measurement",
    "World": "pytest_flops.measurement",
    "Status": "pytest_flops.reports.records",
    "SnapshotFormatError": "pytest_flops.validation",
    "format_bytes": "pytest_flops.units",
    "format_flops": "pytest_flops.units",
    "parse_bytes": "pytest_flops.units",
    "parse_flops": "pytest_flops.units",
    "FlopCounterMode": "pytest_flops.counting.counter",
    "Flops": "pytest_flops.counting.fixture",
    "count": "pytest_flops.counting.dry_run",
    "fake_world": "pytest_flops.counting.distributed",
    "register_flop_formula": "pytest_flops.counting.formulas",
    "scoped_flop_formula": "pytest_flops.counting.formulas",
    "FlopsSnapshotExtension": "pytest_flops.plugin.syrupy_extension",
    "FlopsTestCase": "pytest_flops.plugin.testcase",
}


def __getattr__(name: str) -> Any:
    if name not in _IMPORTED_ON_USE:
        raise AttributeError(f"module 'pytest_flops' has no attribute {name!r}")
    value = getattr(importlib.import_module(_IMPORTED_ON_USE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
