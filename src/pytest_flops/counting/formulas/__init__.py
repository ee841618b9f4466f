"""The op-formula table: which ops cost FLOPs, and how many.

One module per family of ops, each formula a small pure function of shapes
registered by :func:`register_flop_formula`; :mod:`~pytest_flops.counting.formulas.uncounted`
lists the ops that cost 0 by convention. Importing this package fills the table.
"""

from pytest_flops.counting.formulas import (
    attention,
    conv,
    fused,
    linalg,
    matmul,
    rnn,
    spectral,
    vision,
)
from pytest_flops.counting.formulas.registry import (
    FLOP_FORMULAS,
    FlopFormula,
    FlopRegistry,
    FlopTarget,
    Shape,
    as_table_formula,
    flop_registry,
    get_shape,
    is_triton_kernel,
    register_flop_formula,
    scoped_flop_formula,
    shape_wrapper,
    table_formula,
    user_formula,
)
from pytest_flops.counting.formulas.uncounted import is_uncounted

__all__ = [
    "FLOP_FORMULAS",
    "FlopFormula",
    "FlopRegistry",
    "FlopTarget",
    "Shape",
    "as_table_formula",
    "attention",
    "conv",
    "flop_registry",
    "fused",
    "get_shape",
    "is_triton_kernel",
    "is_uncounted",
    "linalg",
    "matmul",
    "register_flop_formula",
    "rnn",
    "scoped_flop_formula",
    "shape_wrapper",
    "spectral",
    "table_formula",
    "user_formula",
    "vision",
]
