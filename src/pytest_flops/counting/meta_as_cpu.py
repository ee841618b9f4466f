"""Meta tensors take the kernels that CPU tensors would.

On the meta device some calls have no fused kernel to choose and decompose
instead, or check what only a GPU kernel needs, which counts differently
from a CPU run of the same call (or not at all):

* ``F.scaled_dot_product_attention`` runs the math decomposition (bmm, softmax,
  bmm), whose backward recomputes nothing: 2x the forward where the fused CPU
  kernel counts 2.5x.
* ``nn.LSTM`` runs step by step through ``addmm``, whose backward skips the
  gradients nobody asked for (the zero initial state's), where the CPU's
  oneDNN kernel computes them all.
* Convolutions: the meta kernel returns a contiguous output where the CPU
  returns channels-last for a channels-last input (SegFormer's depthwise
  convolution of a transposed sequence). A ``flatten(2).transpose(1, 2)``
  after it then feeds the next ``nn.Linear`` a different layout, which takes
  ``mm`` instead of ``addmm``: equal totals, different per-op rows.
* Layer norm's backward: the meta kernel gives the input's gradient the layout
  of the output's gradient, where the CPU (and CUDA) kernels allocate it
  contiguous. SegFormer's layer norms after a transposed sequence then got a
  transposed gradient, which the ``nn.Linear`` backward before them copied to
  contiguous (``clone``): more bytes accessed on meta and fake tensors.
* ``nn.GRU``, ``nn.RNN`` and an LSTM oneDNN does not take project their inputs
  one step at a time on meta (:mod:`pytest_flops.counting.meta_rnn`).
* The oneDNN LSTM layer's backward: the meta kernel returns one tensor for
  both bias gradients, where the CPU returns two; autograd then copied it
  before accumulating it (an ``aten.copy_`` per layer and direction).
* Some pointwise ops (``softplus_backward``, ``xlogy``...) have a decomposition
  for their meta kernel, which lays the output out after another input than
  the CPU's (and CUDA's) TensorIterator does. Doge's softplus gate got a
  contiguous gradient on meta and fake tensors where the CPU's followed the
  transposed gradient of its output, which the reshape before it then copied
  (a ``clone``, 512 bytes per layer, on CPU only).
* Some kernels allocate their output in another layout on the CPU than their
  meta kernel does (``CPU_LAYOUTS``): group norm (forward and backward) and
  pixel (un)shuffle keep a channels-last input's format, ``log_sigmoid``,
  ``rrelu`` and the gradients of the MSE, smooth L1 and Huber losses are
  contiguous. A reshape after them was a view on CPU and a copy on meta (or a
  failed ``.view``).
* ``torch.stft`` and ``torch.istft`` with a window made in the call: the window
  factory runs for real on the CPU, and the op's check that input and window share
  a device refused meta input. The window joins the input on meta.
* ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` in inference take a
  fused kernel (``_native_multi_head_attention``, ``_transformer_encoder_layer_fwd``)
  only for the devices their fast-path check lists, which lack meta: meta ran the
  layer op by op, 5x the bytes of the CPU's one call.
* ``torch._grouped_mm`` (mixture-of-experts layers) has a meta kernel that
  checks the CUDA kernel's dtypes, refusing the float32 the CPU kernel takes,
  so an fp32 MoE model could not be counted on meta or fake tensors.

While a :class:`~pytest_flops.FlopCounterMode` counts (inside
:func:`cpu_kernels_on_meta`), such calls on meta tensors go to the fused CPU
kernels' meta implementations, exactly where a CPU would take them: shapes,
strides and counts then match a CPU run; a float32 grouped GEMM and a layer
norm's input gradient get the CPU kernel's (contiguous) output, those pointwise
ops TensorIterator's layout, and an LSTM
layer's backward two bias gradients, on meta and fake tensors; recurrent layers
project their inputs as a CPU does. Outside, and for
any other tensors, nothing changes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch._decomp import decomposition_table, meta_table
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils._python_dispatch import _disable_current_modes

from pytest_flops.counting.cpu_layouts import (
    CPU_LAYOUTS,
    as_cpu_layout,
    layer_norm_backward_as_cpu,
)
from pytest_flops.counting.elementwise_layout import ELEMENTWISE_LAYOUT_OPS, elementwise_as_cpu
from pytest_flops.counting.meta_attention import cpu_flash_attention_route
from pytest_flops.counting.meta_refusals import (
    AUTOCAST_CHECKED,
    NESTED_FROM_MASK,
    refuse_autocast,
    refuse_nested,
)
from pytest_flops.counting.meta_rnn import (
    ONE_HIDDEN_RNN_CELLS,
    cpu_lstm_route,
    cpu_one_hidden_rnn_route,
    plain_meta,
)
from pytest_flops.counting.patching import WhileCounting, swapped

aten = torch.ops.aten

_routing = threading.local()  # .on: this thread's meta calls take the CPU's kernels


def _routing_on(undo: ExitStack) -> None:
    undo.enter_context(swapped(_routing, "on", True))


_ROUTING = WhileCounting(_routing_on, per_thread=True)

_NO_CUSTOM_BACKEND = "privateuseone"


def _fast_paths_take_meta(undo: ExitStack) -> None:
    """``nn.MultiheadAttention``'s and the transformer layers' inference fast paths
    accept the devices torch lists there, which end with the name of the custom
    (PrivateUse1) backend, read at every call: the meta device takes that place while no
    custom backend is registered. (A torch function mode would route these calls too,
    but an active one switches the fast paths off.)"""
    backends = torch.utils.backend_registration
    if backends._privateuse1_backend_name == _NO_CUSTOM_BACKEND:
        undo.enter_context(swapped(backends, "_privateuse1_backend_name", "meta"))


# the backend's name is one for all threads: swapped while any thread counts
_FAST_PATHS = WhileCounting(_fast_paths_take_meta)


@contextmanager
def cpu_kernels_on_meta() -> Iterator[None]:
    """While active on this thread, meta SDPA, RNN, convolution, grouped GEMM and layer
    norm backward calls take the CPU's kernels (or their outputs' layouts); while
    active on any thread, meta tensors take the transformer inference fast paths."""
    _register_routing_kernels()
    with _FAST_PATHS.held(), _ROUTING.held():
        yield


def _routes() -> bool:
    return bool(getattr(_routing, "on", False))


def _routed(op: torch._ops.OpOverload, route: Any) -> Any:
    """A meta-autograd kernel for ``op``: ``route`` while routing, else ATen's own
    composite kernel, exactly what ran before this one was registered."""

    def kernel(*args: Any, **kwargs: Any) -> Any:
        if _routes():
            out = route(*args, **kwargs)
            if out is not None:
                return out
        return op._op_dk(torch._C.DispatchKey.CompositeImplicitAutograd, *args, **kwargs)

    return kernel


_WINDOW = 4  # the position of ``window`` in stft's and istft's arguments


def _window_on_meta(op: torch._ops.OpOverload) -> Any:
    """A route for ``op`` (stft, istft) that gives a CPU window to meta input: a window
    factory (``torch.hann_window(n)``) ran for real on the CPU, and the composite's
    check of their devices refused the meta input a CPU run's input passes."""

    def route(input: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        window = args[_WINDOW - 1] if len(args) >= _WINDOW else kwargs.get("window")
        if window is None or window.is_meta or not plain_meta(input):
            return None
        with _disable_current_modes():  # not an op of the call: counted nowhere
            on_meta = torch.empty_strided(
                window.shape, window.stride(), dtype=window.dtype, device="meta"
            )
        if len(args) >= _WINDOW:
            args = (*args[: _WINDOW - 1], on_meta, *args[_WINDOW:])
        else:
            kwargs = {**kwargs, "window": on_meta}
        return op._op_dk(torch._C.DispatchKey.CompositeImplicitAutograd, input, *args, **kwargs)

    return route


def _refused(op: torch._ops.OpOverload, refuse: Any) -> Any:
    """A meta kernel for ``op``, which has none: ``refuse`` while routing, else the
    error of an op without one, as before (fake tensors then try their fallback)."""

    def kernel(*args: Any, **kwargs: Any) -> Any:
        if _routes():
            refuse(*args, **kwargs)
        raise NotImplementedError(f"{op}: no Meta kernel")

    return kernel


def _grouped_mm_on_meta(
    mat_a: torch.Tensor,
    mat_b: torch.Tensor,
    offs: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The meta kernel of ``_grouped_mm``: while routing, the CPU kernel's output for the
    float32 it takes and the CUDA checks refuse; else torch's own meta kernel."""
    # Imported here: torch registers its meta kernels when it imports this module.
    from torch._meta_registrations import meta_grouped_mm

    if _routes() and mat_a.dtype == torch.float32 == mat_b.dtype:
        torch._check(bias is None, lambda: "bias is not supported yet")
        return _cpu_grouped_mm_output(mat_a, mat_b, offs, out_dtype or mat_a.dtype)
    return meta_grouped_mm(mat_a, mat_b, offs=offs, bias=bias, out_dtype=out_dtype)


def _cpu_grouped_mm_output(
    mat_a: torch.Tensor, mat_b: torch.Tensor, offs: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """The contiguous output the CPU kernel allocates, with its shape checks."""
    torch._check(
        mat_a.dim() in (2, 3) and mat_b.dim() in (2, 3), lambda: "mat_a, mat_b must be 2-D or 3-D"
    )
    torch._check(
        (offs is not None) == (mat_a.dim() == 2 or mat_b.dim() == 2),
        lambda: "offs must be given exactly when one of mat_a, mat_b is 2-D",
    )
    groups = offs.shape[0] if offs is not None else 0
    if mat_a.dim() == 2 and mat_b.dim() == 2:  # a jagged contraction: one output per group
        shape = [groups, mat_a.shape[0], mat_b.shape[1]]
    elif mat_a.dim() == 2:  # rows of mat_a cut among the experts of mat_b
        torch._check(groups == mat_b.shape[0], lambda: "matrix batch sizes have to match")
        shape = [mat_a.shape[0], mat_b.shape[-1]]
    elif mat_b.dim() == 2:  # columns of mat_b cut among the groups of mat_a
        torch._check(groups == mat_a.shape[0], lambda: "matrix batch sizes have to match")
        shape = [mat_a.shape[1], mat_b.shape[1]]
    else:
        torch._check(mat_a.shape[0] == mat_b.shape[0], lambda: "batched dimension has to match")
        shape = [mat_a.shape[0], mat_a.shape[1], mat_b.shape[-1]]
    torch._check(mat_a.shape[-1] == mat_b.shape[-2], lambda: "contraction sizes have to match")
    return mat_a.new_empty(shape, dtype=dtype)


def _convolution_on_meta(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    transposed: bool,
    output_padding: list[int],
    groups: int,
) -> torch.Tensor:
    """The meta kernel of ``convolution``: while routing, in the memory format the CPU's
    kernel would choose; else torch's own (always contiguous)."""
    from torch._meta_registrations import meta_conv

    out: torch.Tensor = meta_conv(
        input, weight, bias, stride, padding, dilation, transposed, output_padding, groups
    )
    if not _routes() or not plain_meta(input, weight):
        return out
    memory_format = _cpu_conv_memory_format(
        input, weight, bias, stride, padding, dilation, transposed, output_padding, groups
    )
    if out.is_contiguous(memory_format=memory_format):
        return out
    return torch.empty(out.shape, dtype=out.dtype, device="meta", memory_format=memory_format)


def _cpu_conv_memory_format(input: torch.Tensor, weight: torch.Tensor, *conv: Any) -> Any:
    """What ATen's CPU convolution picks: the backend it would select for these shapes
    and strides, and that backend's output format (as fake tensors on the CPU answer)."""
    mode = _cpu_layout_oracle()
    cpu = torch.device("cpu")
    fake_input, fake_weight = FakeTensor(mode, input, cpu), FakeTensor(mode, weight, cpu)
    bias, *rest = conv
    fake_bias = None if bias is None else FakeTensor(mode, bias, cpu)
    with mode:  # fake tensors report their device only while their mode is active
        backend = torch._C._select_conv_backend(fake_input, fake_weight, fake_bias, *rest)
        return torch._C._conv_determine_backend_memory_format(fake_input, fake_weight, backend)


def _layer_norm_backward_on_meta(
    grad_out: torch.Tensor, input: torch.Tensor, *rest: Any
) -> tuple[torch.Tensor | None, ...]:
    """The meta kernel of ``native_layer_norm_backward``: while routing, in the CPU's
    layout; else torch's own (the input's gradient in the layout of ``grad_out``)."""
    # Imported here: torch registers it as the meta kernel when it imports its decompositions.
    from torch._decomp.decompositions import native_layer_norm_backward

    grads = native_layer_norm_backward(grad_out, input, *rest)
    return layer_norm_backward_as_cpu(grads) if _routes() else grads


def _lstm_layer_backward_on_meta(*args: Any) -> tuple[torch.Tensor, ...]:
    """The meta kernel of ``mkldnn_rnn_layer_backward`` (meta and fake tensors): while
    routing, a bias gradient each for ``bias_ih`` and ``bias_hh``, as the CPU returns
    them; else torch's own (one tensor for both)."""
    from torch._meta_registrations import mkldnn_rnn_layer_backward

    grads: tuple[torch.Tensor, ...] = mkldnn_rnn_layer_backward(*args)
    if not _routes():
        return grads
    d_input, d_weight_ih, d_weight_hh, d_bias, _same, *d_states = grads
    return (d_input, d_weight_ih, d_weight_hh, d_bias, torch.empty_like(d_bias), *d_states)


def _cpu_layout_on_meta(op: torch._ops.OpOverload) -> Any:
    """A meta kernel for ``op``: torch's, in the CPU kernel's layout while routing."""
    meta_kernel = meta_table.get(op) or decomposition_table[op]

    def kernel(*args: Any, **kwargs: Any) -> Any:
        out = meta_kernel(*args, **kwargs)
        return as_cpu_layout(op, out, args) if _routes() else out

    return kernel


def _elementwise_on_meta(op: torch._ops.OpOverload) -> Any:
    """A meta kernel for ``op``: torch's (its decomposition), in TensorIterator's layout
    while routing."""
    decomposition = decomposition_table[op]

    def kernel(*args: Any, **kwargs: Any) -> Any:
        out = decomposition(*args, **kwargs)
        return elementwise_as_cpu(out, args) if _routes() else out

    return kernel


@functools.cache
def _cpu_layout_oracle() -> FakeTensorMode:
    return FakeTensorMode()


# The SDPA and RNN ops are composite: on meta tensors they decompose at the AutogradMeta key,
# before any dispatch mode sees them, so that is where the routing sits. (A torch
# function mode could route them too, but an active one switches off the
# transformer inference fast paths, which must run as they do uncounted.)
@functools.cache
def _register_routing_kernels() -> torch.library.Library:
    """Register once, on the first count: a process that never counts keeps ATen's kernels."""
    library = torch.library.Library("aten", "IMPL")
    library.impl(
        "scaled_dot_product_attention",
        _routed(aten.scaled_dot_product_attention.default, cpu_flash_attention_route),
        "AutogradMeta",
    )
    library.impl("lstm.input", _routed(aten.lstm.input, cpu_lstm_route), "AutogradMeta")
    for op in (aten.stft.default, aten.stft.center, aten.istft.default):
        library.impl(_qualified_name(op), _routed(op, _window_on_meta(op)), "AutogradMeta")
    # (fake tensors run meta kernels)
    for op in NESTED_FROM_MASK:
        library.impl(_qualified_name(op), _refused(op, refuse_nested(op)), "Meta")
    for op in AUTOCAST_CHECKED:
        library.impl(_qualified_name(op), _routed(op, refuse_autocast(op)), "AutogradMeta")
    for name, cell in ONE_HIDDEN_RNN_CELLS.items():
        route = _routed(getattr(aten, name).input, cpu_one_hidden_rnn_route(cell))
        library.impl(f"{name}.input", route, "AutogradMeta")
    # _grouped_mm has a kernel per device: its meta kernel is the one that refuses
    # float32, for meta tensors and fake ones (which run meta kernels) alike.
    if hasattr(aten, "_grouped_mm"):
        library.impl("_grouped_mm", _grouped_mm_on_meta, "Meta")
    # Fake tensors pick a convolution's layout before its meta kernel (from their
    # device): only meta tensors reach this one.
    library.impl("convolution", _convolution_on_meta, "Meta")
    library.impl("native_layer_norm_backward", _layer_norm_backward_on_meta, "Meta")
    library.impl("mkldnn_rnn_layer_backward", _lstm_layer_backward_on_meta, "Meta")
    for op in CPU_LAYOUTS:
        library.impl(_qualified_name(op), _cpu_layout_on_meta(op), "Meta")
    for op in ELEMENTWISE_LAYOUT_OPS:
        library.impl(_qualified_name(op), _elementwise_on_meta(op), "Meta")
    return library


def _qualified_name(op: torch._ops.OpOverload) -> str:
    """``op``'s name in the ``aten`` library: ``xlogy.Tensor``, ``softplus_backward``."""
    name = op._schema.name.partition("::")[2]
    return name if op._overloadname == "default" else f"{name}.{op._overloadname}"
