"""Sharded steps: what each rank computes and communicates, on a fake process group.

* **Per-rank FLOPs.** An op on DTensors is counted as the local ops it runs on
  each rank's shards (:func:`is_dtensor_call` hands it to DTensor with the
  counter still active). The ops DTensor's sharding propagation runs on fake
  tensors, only for shapes, are not work and count nothing
  (:func:`propagation_runs_uncounted`).
* **Communication.** Every collective and point-to-point op is recorded with its
  calls and bytes (:func:`traffic_bytes`): the full buffer of a collective, the
  larger of its input and its output, so an all-gather of a 4,096-element fp32
  shard on 4 ranks moves 65,536 bytes, a reduce-scatter of the same result
  65,536, an all-reduce of a tensor its size, whatever the group size; a send or
  receive its message.
* **A world in a test.** :func:`fake_world` sets up torch's ``fake`` process
  group and a device mesh, as rank r of N, in one process, and tears them down
  even when the test fails. The rank, the world size and the mesh are recorded
  with every measurement taken inside it.

Nothing here imports ``torch.distributed`` until a world is set up or a
DTensor is seen.
"""

from __future__ import annotations

import contextvars
import functools
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch._ops import OpOverload
from torch.utils._pytree import tree_leaves

from pytest_flops.counting.patching import WhileCounting, swapped
from pytest_flops.measurement import World

__all__ = ["World", "current_world", "fake_world", "is_collective", "traffic_bytes"]

COMMUNICATION_NAMESPACES = frozenset({"_c10d_functional", "c10d", "_dtensor"})
"""Namespaces of collectives, point-to-point ops and DTensor's own all-to-all."""

_NO_TRAFFIC = frozenset(
    {
        # waiting for, and wrapping, a collective that was already recorded
        "_c10d_functional::wait_tensor",
        "_c10d_functional::_wrap_tensor_autograd",
        "c10d::check_for_nan",
    }
)

_world: contextvars.ContextVar[World | None] = contextvars.ContextVar("world", default=None)


def is_collective(op: OpOverload) -> bool:
    """A collective or point-to-point op (``_c10d_functional.all_reduce``, ``c10d.send``...)."""
    name = op._overloadpacket._qualified_op_name
    return name.split("::")[0] in COMMUNICATION_NAMESPACES and name not in _NO_TRAFFIC


def traffic_bytes(args: Sequence[Any], out: Any) -> int:
    """The bytes a collective moves: its largest buffer.

    Each argument (a tensor, or a list of them, as ``c10d.allgather_`` takes)
    and the output count as one buffer; the largest is what the collective
    moves across the group: the gathered result of an all-gather, the input of
    a reduce-scatter, the tensor of an all-reduce or a send.
    """
    buffers = [*args, out]
    return max((_bytes(buffer) for buffer in buffers), default=0)


def _bytes(value: Any) -> int:
    return sum(
        t.numel() * t.element_size() for t in tree_leaves(value) if isinstance(t, torch.Tensor)
    )


def current_world() -> World | None:
    """The world of the innermost :func:`fake_world`, else that of an initialized group."""
    world = _world.get()
    if world is not None:
        return world
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        return None
    return World(rank=distributed.get_rank(), size=distributed.get_world_size(), mesh={})


@contextmanager
def fake_world(
    world_size: int,
    *,
    rank: int = 0,
    mesh_shape: Sequence[int] | None = None,
    mesh_dim_names: Sequence[str] | None = None,
    device_type: str = "cpu",
) -> Iterator[Any]:
    """Rank ``rank`` of a world of ``world_size``, on torch's ``fake`` process group.

    Yields the :class:`~torch.distributed.device_mesh.DeviceMesh` of
    ``mesh_shape`` (one dimension of ``world_size`` by default). Collectives
    run without communicating: enough to count what a rank computes and sends.
    The group is destroyed on the way out, also when the block raises, so
    worlds of other sizes can follow in the same session.
    """
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore

    shape = tuple(mesh_shape) if mesh_shape is not None else (world_size,)
    names = (
        tuple(mesh_dim_names)
        if mesh_dim_names is not None
        else tuple(f"dim{i}" for i in range(len(shape)))
    )
    if _product(shape) != world_size or len(names) != len(shape):
        raise ValueError(
            f"fake_world: a mesh of shape {shape} (dims {names}) does not hold a world of "
            f"{world_size} ranks"
        )
    if not 0 <= rank < world_size:
        raise ValueError(f"fake_world: rank {rank} is not in a world of {world_size}")
    if dist.is_initialized():
        raise RuntimeError(
            "fake_world: a process group is already initialized in this process; nest no worlds"
        )
    dist.init_process_group("fake", rank=rank, world_size=world_size, store=FakeStore())
    token = _world.set(World(rank=rank, size=world_size, mesh=dict(zip(names, shape, strict=True))))
    try:
        yield init_device_mesh(device_type, shape, mesh_dim_names=names)
    finally:
        _world.reset(token)
        dist.destroy_process_group()


def _product(shape: Sequence[int]) -> int:
    result = 1
    for size in shape:
        result *= size
    return result


# -- DTensor ------------------------------------------------------------------------------


def is_dtensor_call(types: Sequence[type]) -> bool:
    """Whether an op's tensor subclasses (``__torch_dispatch__``'s ``types``) hold a DTensor."""
    tensor_module = sys.modules.get("torch.distributed.tensor")
    dtensor = getattr(tensor_module, "DTensor", None)
    return dtensor is not None and any(issubclass(t, dtensor) for t in types)


@dataclass
class _Propagation(threading.local):
    depth: int = 0


_propagating = _Propagation()


def in_sharding_propagation() -> bool:
    """Whether DTensor is working out an op's output shapes on fake tensors (no work)."""
    return _propagating.depth > 0


@contextmanager
def propagation_runs_uncounted() -> Iterator[None]:
    """While counting, mark DTensor's shape propagation so its ops are not counted.

    DTensor runs an op once on fake tensors of the global shapes to learn the
    output's, then on each rank's shards: only the second is work. There is no
    public hook between the two, so the propagation method is wrapped while a
    counter is active (and only once DTensor is imported).
    """
    if _propagator() is None:
        yield
        return
    with _PROPAGATION_UNCOUNTED.held():
        yield


_PROPAGATE = "_propagate_tensor_meta_non_cached"


def _propagator() -> Any:
    sharding_prop = sys.modules.get("torch.distributed.tensor._sharding_prop")
    return getattr(sharding_prop, "ShardingPropagator", None)


def _propagation_uncounted(undo: ExitStack) -> None:
    propagator = _propagator()
    undo.enter_context(swapped(propagator, _PROPAGATE, _uncounted(getattr(propagator, _PROPAGATE))))


_PROPAGATION_UNCOUNTED = WhileCounting(_propagation_uncounted)


def _uncounted(method: Any) -> Any:
    @functools.wraps(method)
    def propagate(*args: Any, **kwargs: Any) -> Any:
        _propagating.depth += 1
        try:
            return method(*args, **kwargs)
        finally:
            _propagating.depth -= 1

    return propagate
