"""Every case and number of torch's own test_flop_counter.py (its older file), against our
counter; the newest file's other tests are in test_upstream_flop_counter.py.

The expected values are the seed's; the derivations in the comments show that
they are what the formulas say, not just what some counter printed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torch.utils.flop_counter

from pytest_flops import FlopCounterMode

aten = torch.ops.aten


def counter(**kwargs: object) -> FlopCounterMode:
    return FlopCounterMode(display=False, **kwargs)  # type: ignore[arg-type]


def T(*shape: int, requires_grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, requires_grad=requires_grad)


def test_variety() -> None:
    mod = torch.nn.Linear(9, 10)
    with counter() as mode:
        torch.mm(T(4, 5), T(5, 6))  # 2*4*5*6 = 240
        torch.addmm(T(4, 6), T(4, 5), T(5, 6), beta=0.5, alpha=0.5)  # 240
        torch.matmul(T(5, 6), T(6, 7))  # 2*5*6*7 = 420
        torch.einsum("ab,bc->ac", T(6, 7), T(7, 8))  # 2*6*7*8 = 672
        mod(T(8, 9))  # 2*8*9*10 = 1440
    assert mode.get_total_flops() == 240 + 240 + 420 + 672 + 1440 == 3012


def test_running_sequence_resets_on_each_enter() -> None:
    with counter() as mode:
        torch.mm(T(4, 5), T(5, 6))
    assert mode.get_total_flops() == 240  # 2*4*5*6

    with mode:
        torch.bmm(T(3, 4, 5), T(3, 5, 6))
    assert mode.get_total_flops() == 720  # 2*3*4*5*6

    with mode:
        torch.addmm(T(4, 6), T(4, 5), T(5, 6))
        torch.addmm(T(4, 1), T(4, 5), T(5, 6))
        torch.addmm(T(6), T(4, 5), T(5, 6))
    assert mode.get_total_flops() == 720  # 3 * 240: the bias broadcast is free

    with mode:
        torch.baddbmm(T(3, 4, 6), T(3, 4, 5), T(3, 5, 6))
    assert mode.get_total_flops() == 720  # as bmm

    with mode:
        torch.conv2d(T(2, 3, 6, 6), T(6, 3, 4, 4), padding=1)
    # out 5x5: 2 * N=2 * 25 positions * C_out=6 * C_in=3 * 16 taps = 28800
    assert mode.get_total_flops() == 28800

    with mode:
        torch.conv1d(T(2, 3, 6), T(6, 3, 4), padding=1)
    # out length 5: 2 * 2 * 5 * 6 * 3 * 4 = 1440
    assert mode.get_total_flops() == 1440


def test_backward() -> None:
    with counter() as mode:
        a = T(4, 5, requires_grad=True)
        a = torch.mm(a, T(5, 6))  # fwd 240; bwd grad_a only: 240
        a = a.unsqueeze(0).expand(7, 4, 6)
        a = torch.bmm(a, T(7, 6, 7))  # fwd 2*7*4*6*7 = 2352; bwd grad_a only: 2352
        a.sum().backward()
    assert mode.get_total_flops() == 240 + 240 + 2352 + 2352 == 5184


def test_backward_reset() -> None:
    with counter() as mode:
        a = T(4, 5, requires_grad=True)
        a.mm(a.t()).sum().backward()  # fwd 2*4*5*4 = 160, bwd 2 mm = 320
        a.mm(a.t()).sum().backward()
    assert mode.get_total_flops() == 2 * (160 + 320) == 960


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_torchscript() -> None:
    def foo(x: torch.Tensor) -> torch.Tensor:
        return torch.mm(x, x)

    with counter() as mode:
        foo(T(5, 5))
    unscripted = mode.get_total_flops()
    scripted = torch.jit.script(foo)
    with mode:
        scripted(T(5, 5))
    assert unscripted == mode.get_total_flops() == 250  # 2*5*5*5


def test_autograd_function() -> None:
    class CustomOp(torch.autograd.Function):
        @staticmethod
        def forward(ctx: object, input: torch.Tensor) -> torch.Tensor:
            return torch.mm(input, input)

        @staticmethod
        def backward(ctx: object, grad_output: torch.Tensor) -> torch.Tensor:
            return torch.mm(grad_output, grad_output) + torch.mm(grad_output, grad_output)

    a = T(5, 5, requires_grad=True)
    with counter() as mode:
        CustomOp.apply(a).sum().backward()
    assert mode.get_total_flops() == 3 * 250 == 750  # one mm forward, two backward


def test_conv_backward_as_decomposition_matches_autograd() -> None:
    class OnlyConvs(torch.autograd.Function):
        @staticmethod
        def forward(inp: torch.Tensor, weight: torch.Tensor, transposed: bool) -> torch.Tensor:
            return F.conv_transpose1d(inp, weight) if transposed else F.conv1d(inp, weight)

        @staticmethod
        def setup_context(ctx: object, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            inp, weight, transposed = inputs
            ctx.save_for_backward(inp, weight)  # type: ignore[attr-defined]
            ctx.transposed = transposed  # type: ignore[attr-defined]

        @staticmethod
        def backward(ctx: object, grad_out: torch.Tensor) -> tuple[Any, ...]:
            inp, weight = ctx.saved_tensors  # type: ignore[attr-defined]
            if not ctx.transposed:  # type: ignore[attr-defined]
                return F.conv_transpose1d(grad_out, weight), F.conv1d(inp, grad_out), None
            grad_inp = F.conv1d(grad_out, weight)
            grad_weight = F.conv1d(grad_out.transpose(1, 0), inp.transpose(1, 0))
            return grad_inp, grad_weight.transpose(1, 0), None

    x = torch.randn(2, 3, 16, dtype=torch.float64)
    weight = torch.randn(3, 4, 4, dtype=torch.float64)

    def boring_conv(x: torch.Tensor, weight: torch.Tensor, transposed: bool) -> torch.Tensor:
        conv = F.conv_transpose1d if transposed else F.conv1d
        return conv(x, weight).pow(2).sum()

    def only_convs(x: torch.Tensor, weight: torch.Tensor, transposed: bool) -> torch.Tensor:
        return OnlyConvs.apply(x, weight, transposed).pow(2).sum()

    with counter():
        boring = torch.func.grad(boring_conv, argnums=(0, 1))(x, weight, True)
        fun = torch.func.grad(only_convs, argnums=(0, 1))(x, weight, True)
    torch.testing.assert_close(boring, fun)


def conv_forward_and_backward(f: Callable[[], object]) -> tuple[int, int]:
    with counter() as mode:
        f()
    counts = mode.get_flop_counts()["Global"]
    return counts[aten.convolution], counts[aten.convolution_backward]


def test_convs() -> None:
    x = torch.rand(1, 1, 2, 2, requires_grad=True)
    weight = torch.randn(1, 1, 2, 2, requires_grad=True)
    # transposed: 2 * 4 input positions * 4 taps = 32
    forward, backward = conv_forward_and_backward(
        lambda: F.conv_transpose2d(x, weight).sum().backward()
    )
    assert (forward, backward) == (32, 64)

    weight = torch.randn(1, 1, 1, 1, requires_grad=True)
    forward, backward = conv_forward_and_backward(lambda: F.conv2d(x, weight).sum().backward())
    assert (forward, backward) == (8, 16)  # 2 * 4 positions * 1 tap


@pytest.mark.parametrize(
    ("in_channels", "out_channels"), [(1, 1), (1, 3), (3, 1), (3, 7), (2, 4), (4, 2)]
)
def test_conv_backward_is_twice_forward(in_channels: int, out_channels: int) -> None:
    x = torch.rand(1, in_channels, 4, 4, requires_grad=True)
    weight = torch.randn(out_channels, in_channels, 2, 2, requires_grad=True)
    forward, backward = conv_forward_and_backward(lambda: F.conv2d(x, weight).sum().backward())
    # 2 * 9 positions * C_out * C_in * 4 taps; backward = grad_input + grad_weight
    assert forward == 2 * 9 * out_channels * in_channels * 4
    assert backward == 2 * forward

    transposed_weight = torch.randn(in_channels, out_channels, 2, 2, requires_grad=True)
    forward, backward = conv_forward_and_backward(
        lambda: F.conv_transpose2d(x, transposed_weight).sum().backward()
    )
    assert forward == 2 * 16 * in_channels * out_channels * 4  # per input position
    assert backward == 2 * forward


def test_resnet18_module_rows() -> None:
    models = pytest.importorskip("torchvision.models")
    resnet18 = models.resnet18()
    with pytest.warns(UserWarning, match="not needed"), counter(mods=resnet18) as mode:
        resnet18(T(1, 3, 224, 224, requires_grad=True)).sum().backward()
    assert mode.get_total_flops() == 10884440064
    assert mode.flop_counts["ResNet.layer1"][aten.convolution] == 924844032
    # every conv in layer1 has input and weight needing grad: backward is twice forward
    assert mode.flop_counts["ResNet.layer1"][aten.convolution_backward] == 1849688064


def test_conv_transpose_loop() -> None:
    x = torch.rand(1, 4, 30, 2)
    model = torch.nn.ConvTranspose2d(4, 8, (2, 2), stride=2)
    with counter() as mode:
        for _ in range(50):
            model(x).sum().backward()
    # forward: 2 * 60 input positions * C_in=4 * C_out=8 * 4 taps = 15360;
    # backward: grad_weight only (x needs no grad), the same 15360; 50 iterations.
    assert mode.get_total_flops() == 50 * (15360 + 15360) == 1536000


def test_custom_mapping() -> None:
    mode = counter(custom_mapping={aten.add: lambda *args, out_shape: 5})
    with mode:
        a = T(4, 5)
        a + a
    assert mode.get_total_flops() == 5

    def count(*args: object, out_val: torch.Tensor) -> int:
        return out_val.numel()

    count._get_raw = True  # type: ignore[attr-defined]
    mode = counter(custom_mapping={aten.add: count})
    with mode:
        a = T(4, 5)
        a + a
    assert mode.get_total_flops() == 20  # numel of the 4x5 output


def test_noop() -> None:
    with counter() as mode:
        T(4, 5).cos()
    assert mode.get_total_flops() == 0
    assert mode.to_measurement().unsupported == {}


def test_mm_out() -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        y = torch.zeros(10, 10)
        return torch.mm(x, x, out=y)

    with counter() as mode:
        f(torch.randn(10, 10))
    assert mode.get_total_flops() == 2000  # 2*10*10*10


def test_hook_registration() -> None:
    model = torch.nn.Linear(100, 100)
    x = torch.randn(3, 100)
    module_hooks = torch.nn.modules.module
    with counter():
        assert len(module_hooks._global_forward_pre_hooks) == 1
        assert len(module_hooks._global_forward_hooks) == 1
        model(x).sum().backward()
    assert len(module_hooks._global_forward_pre_hooks) == 0
    assert len(module_hooks._global_forward_hooks) == 0


def test_hooks_removed_when_block_raises() -> None:
    module_hooks = torch.nn.modules.module
    with pytest.raises(RuntimeError, match="boom"), counter():
        raise RuntimeError("boom")
    assert len(module_hooks._global_forward_pre_hooks) == 0
    assert len(module_hooks._global_forward_hooks) == 0
    assert len(module_hooks._global_forward_hooks_always_called) == 0


def test_pytrees() -> None:
    class Foo(torch.nn.Module):
        def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            y = x["a"].relu_()
            return {"a": torch.mm(y, y)}

    class Mod(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = Foo()
            self.b = Foo()

        def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return self.b(self.a(x))

    mod = Mod()
    with counter() as mode:
        mod({"a": torch.randn(10, 10, requires_grad=True).clone()})["a"].sum().backward()
    # 2 mm forward (2000 each) + 2 backward mm each (x is used on both sides) = 6 * 2000
    assert mode.flop_counts["Mod"][aten.mm] == 12000
    assert mode.flop_counts["Mod.a"][aten.mm] == 6000
    assert mode.flop_counts["Mod.b"][aten.mm] == 6000

    class Mod2(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
            return (torch.mm(x, x),)

    mod2 = Mod2()
    with counter() as mode:
        mod2(torch.randn(10, 10, requires_grad=True))[0].sum().backward()
    assert mode.flop_counts["Mod2"][aten.mm] == 6000


def test_warning() -> None:
    with pytest.warns(UserWarning, match="not needed"):
        FlopCounterMode(torch.nn.Linear(2, 2))


# -- parity with torch.utils.flop_counter where torch is right ----------------------------


def _mat(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, requires_grad=True)


PARITY_CASES: dict[str, Callable[[], torch.Tensor]] = {
    "mm": lambda: torch.mm(_mat(4, 5), _mat(5, 6)),
    "bmm": lambda: torch.bmm(_mat(3, 4, 5), _mat(3, 5, 6)),
    "addmm": lambda: torch.addmm(_mat(6), _mat(4, 5), _mat(5, 6)),
    "baddbmm": lambda: torch.baddbmm(_mat(3, 4, 6), _mat(3, 4, 5), _mat(3, 5, 6)),
    "matmul_broadcast": lambda: torch.matmul(_mat(2, 3, 4, 5), _mat(5, 6)),
    "matmul_batch_broadcast": lambda: torch.matmul(_mat(2, 1, 4, 5), _mat(3, 5, 6)),
    "einsum_batch": lambda: torch.einsum("bij,bjk->bik", _mat(3, 4, 5), _mat(3, 5, 6)),
    "einsum_multi_batch": lambda: torch.einsum(
        "bhqd,bhkd->bhqk", _mat(2, 3, 4, 8), _mat(2, 3, 5, 8)
    ),
    "linear_3d": lambda: F.linear(_mat(2, 7, 9), _mat(10, 9), _mat(10)),
    "conv1d_stride_pad": lambda: F.conv1d(_mat(2, 3, 17), _mat(4, 3, 3), stride=2, padding=1),
    "conv2d_dilation": lambda: F.conv2d(
        _mat(2, 3, 12, 12), _mat(5, 3, 3, 3), dilation=2, padding=2
    ),
    "conv3d": lambda: F.conv3d(_mat(1, 2, 6, 6, 6), _mat(4, 2, 3, 3, 3), stride=(1, 2, 2)),
    "conv_transpose1d": lambda: F.conv_transpose1d(_mat(2, 3, 9), _mat(3, 4, 3), stride=2),
    "conv_transpose2d_pad": lambda: F.conv_transpose2d(
        _mat(1, 4, 5, 5), _mat(4, 2, 3, 3), stride=2, padding=1, output_padding=1
    ),
    "conv_transpose3d": lambda: F.conv_transpose3d(_mat(1, 2, 3, 3, 3), _mat(2, 3, 2, 2, 2)),
}


@pytest.mark.parametrize("case", PARITY_CASES)
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
def test_parity_with_torch(case: str, backward: bool) -> None:
    def run(mode: object) -> dict[str, dict[str, int]]:
        torch.manual_seed(0)
        with mode:  # type: ignore[attr-defined]
            out = PARITY_CASES[case]()
            if backward:
                out.sum().backward()
        return {
            module: {str(op): flops for op, flops in counts.items() if flops}
            for module, counts in mode.get_flop_counts().items()  # type: ignore[attr-defined]
        }

    theirs = run(torch.utils.flop_counter.FlopCounterMode(display=False))
    ours = run(counter())
    assert ours == theirs
    assert ours["Global"]  # every case counts something
