"""Calls that meta tensors cannot count as a CPU does, refused while counting.

Counting on meta promises the CPU's count; where that cannot be had, the count
raises an error that says what to do instead, never a different count:

* Under ``torch.autocast``: autocast casts only tensors of its own device, and meta
  tensors kept their dtype. A bf16 training step on the CPU counted fp32 on meta,
  with other bytes (no casts) and another precision. Its matmuls and convolutions
  refuse to run: those entered by ``F.linear``, ``@``, ``einsum`` and the
  convolutions (``torch.mm`` and ``torch.bmm`` called directly are not checked).
  Fake tensors keep their device, and autocast casts them as there.
* ``nn.TransformerEncoder`` with a ``src_key_padding_mask`` in inference: its fast
  path makes a nested tensor of the batch, which neither meta nor fake tensors hold
  (meta had no kernel for it, fake failed inside torch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

aten = torch.ops.aten

__all__ = ["AUTOCAST_CHECKED", "NESTED_FROM_MASK", "refuse_autocast", "refuse_nested"]

_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps")

# The composite ops a step's matmuls and convolutions enter by: a Python kernel at
# AutogradMeta sees them above autograd, where autocast's state is still visible.
AUTOCAST_CHECKED = (
    aten.linear.default,
    aten.matmul.default,
    aten.einsum.default,
    *(getattr(aten, f"conv{d}d").default for d in (1, 2, 3)),
    *(getattr(aten, f"conv{d}d").padding for d in (1, 2, 3)),
    aten.conv_transpose1d.default,
    aten.conv_transpose2d.input,
    aten.conv_transpose3d.input,
)


def refuse_autocast(op: torch._ops.OpOverload) -> Callable[..., None]:
    """A route for ``op`` on meta tensors that raises while autocast is on."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        for device in _AUTOCAST_DEVICES:
            if torch.is_autocast_enabled(device):
                raise RuntimeError(
                    f"{op} on meta tensors under torch.autocast({device!r}): autocast "
                    "casts only tensors of its own device, so meta tensors keep their "
                    "dtype and the count would not be the autocast run's. Count with "
                    'pytest_flops.count(..., device="fake"), or build the model under '
                    "FakeTensorMode: fake tensors keep their device, and autocast casts "
                    "them as on it"
                )

    return refuse


NESTED_FROM_MASK = (
    aten._nested_tensor_from_mask.default,
    aten._nested_tensor_from_mask_left_aligned.default,
)
"""The ops by which ``nn.TransformerEncoder``'s inference fast path turns a padded batch
into a nested tensor."""


def refuse_nested(op: torch._ops.OpOverload) -> Callable[..., None]:
    """A route for ``op`` on meta and fake tensors that raises: neither can hold a nested
    tensor (meta had no kernel, fake failed inside torch), and the CPU's count is that of
    the nested batch."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            f"{op}: nn.TransformerEncoder's inference fast path turns a batch with a "
            "src_key_padding_mask into a nested tensor, which meta and fake tensors cannot "
            "hold, so this call cannot be counted as the CPU runs it. Build the encoder "
            "with enable_nested_tensor=False (then the CPU too runs the padded batch), or "
            "count the call on the CPU"
        )

    return refuse
