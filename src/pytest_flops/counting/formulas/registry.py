"""The formula table and how formulas are registered in it.

A formula is a small pure function of shapes, registered on one or more
``torch.ops.<namespace>.<op>`` packets (or higher-order operators such as
``torch.ops.higher_order.flex_attention``, or ``@triton.jit`` kernels) with
:func:`register_flop_formula`, once per op: a second one must say
``override=True``, or be scoped to a ``with`` block (:func:`scoped_flop_formula`).
Tensors in the op's arguments and output arrive as shape tuples (lists of
tensors as lists of shapes) and the output as ``out_shape=``; a formula
registered with ``get_raw=True`` gets the real arguments and ``out_val=``.
:data:`flop_registry` shows the table in torch's calling form.

This table is ours on purpose: a snapshot must not change because torch's own
registry changed between releases. For ops outside ``aten`` and ``prims`` that
the table does not know, a formula the user registered with torch's
``torch.utils.flop_counter.register_flop_formula`` counts
(:func:`user_formula`): that is the user's formula, not torch's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeAlias

import torch
from torch._ops import HigherOrderOperator, OpOverload, OpOverloadPacket

aten = torch.ops.aten

Shape: TypeAlias = Sequence[int]
FlopFormula: TypeAlias = Callable[..., int]
FlopTarget: TypeAlias = OpOverloadPacket | HigherOrderOperator | Any
"""An aten (or custom) op packet, a higher-order operator such as FlexAttention, or a
user's triton kernel (``@triton.jit``; typed ``Any``: triton is optional)."""

FLOP_FORMULAS: dict[FlopTarget | str, FlopFormula] = {}
"""Registered formulas by op packet (or by qualified name, ``"namespace::op"``, for ops
defined only once their module is imported). Formulas here take ``(args, kwargs, out)``."""

# torch's own table has aten ops only; what else is in it the user registered
_OURS_ALONE = frozenset({"aten", "prims", "prim"})


Target: TypeAlias = FlopTarget | OpOverload | str


def register_flop_formula(
    targets: Target | Iterable[Target], *, get_raw: bool = False, override: bool = False
) -> Callable[[FlopFormula], FlopFormula]:
    """Register ``formula`` for ``targets``, for the rest of the process.

    Use it for your own custom ops, higher-order operators and triton kernels::

        @register_flop_formula(torch.ops.mylib.fused_mlp)
        def fused_mlp_flop(x_shape, w1_shape, w2_shape, *, out_shape):
            ...

    An overload (``torch.ops.aten.mm.default``) registers its whole packet: the
    table counts by packet, as torch's does. A qualified name
    (``"mylib::fused_mlp"``) registers an op that is defined later. Counters
    read the table when an op first runs in a ``with`` block, so a
    registration counts from every counter's next block on, counters created
    before it too.

    A target that already has a formula (built in, or registered earlier) is
    refused: replacing it would change every later count in the process, so
    results would depend on test order. ``override=True`` replaces it;
    :func:`scoped_flop_formula` replaces it inside a ``with`` block only.
    """
    keys = _table_keys(targets)

    def register(formula: FlopFormula) -> FlopFormula:
        if not override:
            for key in keys:
                _refuse_duplicate(key)
        wrapped = as_table_formula(formula, get_raw=get_raw)
        for key in keys:
            FLOP_FORMULAS[key] = wrapped
        return formula

    return register


@contextmanager
def scoped_flop_formula(
    targets: Target | Iterable[Target],
    formula: FlopFormula,
    *,
    get_raw: bool = False,
    override: bool = False,
) -> Iterator[None]:
    """Register ``formula`` for ``targets`` inside a ``with`` block only.

    On leaving the block each target has the formula it had before (or none),
    also when the block raises. A target that has a formula is refused unless
    ``override=True``, as with :func:`register_flop_formula`.
    """
    keys = _table_keys(targets)
    before = {key: FLOP_FORMULAS.get(key) for key in keys}
    register_flop_formula(targets, get_raw=get_raw, override=override)(formula)
    try:
        yield
    finally:
        for key, previous in before.items():
            if previous is None:
                FLOP_FORMULAS.pop(key, None)
            else:
                FLOP_FORMULAS[key] = previous


def _table_keys(targets: Target | Iterable[Target]) -> list[FlopTarget | str]:
    """The table keys of ``targets``: one target, or a list, tuple or set of them."""
    many = isinstance(targets, (list, tuple, set, frozenset))
    keys = []
    for target in targets if many else [targets]:  # type: ignore[union-attr]
        if isinstance(target, OpOverload):
            target = target._overloadpacket
        if not (
            isinstance(target, (OpOverloadPacket, HigherOrderOperator))
            or (isinstance(target, str) and "::" in target)
            or is_triton_kernel(target)
        ):
            raise ValueError(
                "register_flop_formula: expected each target to be an op (torch.ops.ns.op, "
                "torch.ops.ns.op.overload or 'ns::op'), a higher-order operator or a "
                f"@triton.jit kernel, got {target!r} of type {type(target).__name__}"
            )
        keys.append(target)
    return keys


def _refuse_duplicate(key: FlopTarget | str) -> None:
    name = key._qualified_op_name if isinstance(key, OpOverloadPacket) else key
    taken = (
        key in FLOP_FORMULAS
        or (isinstance(key, OpOverloadPacket) and name in FLOP_FORMULAS)
        or (
            isinstance(key, str)
            and any(
                isinstance(k, OpOverloadPacket) and k._qualified_op_name == key
                for k in FLOP_FORMULAS
            )
        )
    )
    if taken:
        raise RuntimeError(
            f"register_flop_formula: {name} already has a formula; replacing it would change "
            "every later count in this process. Pass override=True to replace it, or use "
            "scoped_flop_formula(...) to replace it inside a with block only"
        )


def is_triton_kernel(target: object) -> bool:
    """A ``@triton.jit`` kernel. triton is imported once someone made one, never here."""
    jit = sys.modules.get("triton.runtime.jit")
    return jit is not None and isinstance(target, jit.JITFunction)


def get_shape(value: Any) -> Any:
    """A tensor's shape; anything else as it is (torch's ``get_shape``)."""
    return value.shape if isinstance(value, torch.Tensor) else value


def shape_wrapper(formula: FlopFormula) -> FlopFormula:
    """``formula``, a function of shapes with ``out_shape=``, in torch's calling form:
    ``f(*args, out_val=out, **kwargs)`` where tensors, also inside lists, tuples and
    dicts, become their shapes (torch's ``shape_wrapper``)."""

    @wraps(formula)
    def with_values(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
        return formula(*_shape_of(args), out_shape=_shape_of(out_val), **_shape_of(kwargs))

    return with_values


def as_table_formula(formula: FlopFormula, *, get_raw: bool) -> FlopFormula:
    """Adapt a formula to the ``(args, kwargs, out)`` table calling form: one of shapes,
    or with ``get_raw`` one of the real arguments (and ``out_val=``)."""
    if get_raw:

        def raw(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
            return formula(*args, out_val=out, **kwargs)

        return raw

    # every counted op calls this: one call into the formula, shapes taken in place
    def of_shapes(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        shapes = [arg.shape if isinstance(arg, torch.Tensor) else _shape_of(arg) for arg in args]
        out_shape = out.shape if isinstance(out, torch.Tensor) else _shape_of(out)
        if kwargs:
            return formula(*shapes, out_shape=out_shape, **_shape_of(kwargs))
        return formula(*shapes, out_shape=out_shape)

    return of_shapes


class FlopRegistry(Mapping[Any, FlopFormula]):
    """The formula table in torch's calling form (torch's ``flop_registry``):
    ``flop_registry[torch.ops.aten.bmm](a, b, out, out_val=out)``, with tensors or shapes.

    A read-only view: register with :func:`register_flop_formula`.
    """

    def __getitem__(self, target: Any) -> FlopFormula:
        formula = FLOP_FORMULAS.get(target)
        if formula is None and isinstance(target, OpOverloadPacket):
            formula = FLOP_FORMULAS.get(target._qualified_op_name)
        if formula is None:
            raise KeyError(target)
        table = formula

        def torch_calling_form(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
            return table(args, kwargs, out_val)

        return torch_calling_form

    def __iter__(self) -> Iterator[Any]:
        return iter(list(FLOP_FORMULAS))

    def __len__(self) -> int:
        return len(FLOP_FORMULAS)


flop_registry = FlopRegistry()


def table_formula(
    table: Mapping[FlopTarget | str, FlopFormula], packet: OpOverloadPacket
) -> FlopFormula | None:
    """``packet``'s formula in ``table``, registered by packet or by qualified name."""
    formula = table.get(packet)
    return formula if formula is not None else table.get(packet._qualified_op_name)


def user_formula(packet: OpOverloadPacket) -> FlopFormula | None:
    """The formula a user registered for ``packet`` with torch's own registry, if any.

    Only for ops of the user's namespaces: for ``aten`` and ``prims`` our table
    is the only source. torch's registry is read only once something imported
    it (a user registering a formula there did).
    """
    if packet._qualified_op_name.split("::")[0] in _OURS_ALONE:
        return None
    flop_counter = sys.modules.get("torch.utils.flop_counter")
    formula = None if flop_counter is None else flop_counter.flop_registry.get(packet)
    if formula is None:
        return None

    def theirs(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        return int(formula(*args, **kwargs, out_val=out))

    return theirs


def existing_packets(*names: str) -> list[OpOverloadPacket]:
    """The aten packets among ``names`` that this torch release has (newer kernels)."""
    return [getattr(aten, name) for name in names if hasattr(aten, name)]


def _shape_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.shape  # a torch.Size: a tuple already
    if isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        return type(value)(_shape_of(v) for v in value)
    if isinstance(value, dict):
        return {k: _shape_of(v) for k, v in value.items()}
    return value
