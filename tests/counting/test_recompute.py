"""Activation checkpointing's recompute: the forward work re-run in backward, a phase of its own."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
)

from pytest_flops import FlopCounterMode, Measurement, fake_world
from pytest_flops.counting.fixture import Flops

# Linear(64, 256) -> ReLU -> Linear(256, 64) on a (32, 64) input that requires grad.
# Each linear is one addmm of 2*32*64*256 = 1,048,576 FLOPs forward; backward takes
# the grad of its input and of its weight, two products of that size each.
LINEAR = 2 * 32 * 64 * 256
FORWARD = 2 * LINEAR  # 2,097,152
BACKWARD = 4 * LINEAR  # 4,194,304


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64))


def measure(step: Callable[[], Any], models: nn.Module | None = None) -> Measurement:
    with FlopCounterMode(display=False, models=models) as mode:
        step()
    return mode.to_measurement()


def train_step(model: nn.Module, x: torch.Tensor, **checkpointing: Any) -> None:
    out = model(x) if not checkpointing else checkpoint(model, x, **checkpointing)
    out.sum().backward()


STYLES = {
    # (checkpoint keywords, recompute, the second linear's recompute)
    "no checkpoint": ({}, 0, 0),
    # A reentrant checkpoint re-runs the whole function: both linears.
    "reentrant": ({"use_reentrant": True}, FORWARD, LINEAR),
    # Without early stop a non-reentrant one re-runs it whole as well.
    "non-reentrant, no early stop": (
        {"use_reentrant": False, "early_stop": False},
        FORWARD,
        LINEAR,
    ),
    # torch's default early stop ends the recompute once every tensor backward saved is
    # back: the second linear's input and weight are saved before it runs, its output
    # is not needed, so its addmm is not re-run.
    "non-reentrant": ({"use_reentrant": False}, LINEAR, 0),
}


@pytest.mark.parametrize(("checkpointing", "recompute", "second"), STYLES.values(), ids=STYLES)
def test_recompute_is_its_own_phase(
    checkpointing: dict[str, Any], recompute: int, second: int
) -> None:
    model = mlp()
    x = torch.randn(32, 64, requires_grad=True)
    measured = measure(lambda: train_step(model, x, **checkpointing), model)

    assert (measured.forward, measured.backward, measured.recompute) == (
        FORWARD,
        BACKWARD,
        recompute,
    )
    assert measured.total == FORWARD + BACKWARD + recompute
    assert measured.model_flops == FORWARD + BACKWARD  # what MFU counts: recompute left out
    rows = {path: (m.forward, m.backward, m.recompute) for path, m in measured.modules.items()}
    assert rows == {
        "Global": (FORWARD, BACKWARD, recompute),
        "Sequential": (FORWARD, BACKWARD, recompute),
        "Sequential.0": (LINEAR, 2 * LINEAR, recompute and LINEAR),
        "Sequential.1": (0, 0, 0),  # the ReLU: bytes accessed only
        "Sequential.2": (LINEAR, 2 * LINEAR, second),
    }
    # Its (32, 256) fp32 activation is 32,768 bytes: relu reads and writes it (65,536),
    # again where the checkpoint re-runs it; threshold_backward reads the gradient and
    # the input and writes the gradient (98,304).
    relu = measured.modules["Sequential.1"]
    assert (relu.bytes_forward, relu.bytes_backward, relu.bytes_recompute) == (
        65_536,
        98_304,
        65_536 if recompute else 0,
    )
    # the op rows hold every phase: addmm forward and recomputed, mm backward
    assert measured.by_op == {"aten.addmm": FORWARD + recompute, "aten.mm": BACKWARD}


@pytest.mark.parametrize("use_reentrant", [True, False], ids=["reentrant", "non-reentrant"])
def test_a_checkpoint_under_no_grad_recomputes_nothing(use_reentrant: bool) -> None:
    model = mlp()
    x = torch.randn(32, 64, requires_grad=True)
    with torch.no_grad():
        measured = measure(lambda: checkpoint(model, x, use_reentrant=use_reentrant))
    # inference: the forward once, no graph, so no backward and nothing to re-run
    assert (measured.forward, measured.backward, measured.recompute) == (FORWARD, 0, 0)


@pytest.mark.parametrize("outer_reentrant", [True, False], ids=["reentrant", "non-reentrant"])
def test_a_checkpoint_nested_in_a_recomputed_function_is_recompute(outer_reentrant: bool) -> None:
    torch.manual_seed(0)
    outer = nn.Sequential(nn.Linear(64, 64), nn.ReLU())
    inner = nn.Sequential(nn.Linear(64, 256), nn.ReLU())
    x = torch.randn(32, 64, requires_grad=True)

    def function(x: torch.Tensor) -> torch.Tensor:
        return checkpoint(inner, outer(x), use_reentrant=False, early_stop=False)

    def step() -> None:
        out = checkpoint(function, x, use_reentrant=outer_reentrant, early_stop=False)
        out.relu().sum().backward()

    measured = measure(step)
    small, large = 2 * 32 * 64 * 64, 2 * 32 * 64 * 256  # 262,144 and 1,048,576
    # The outer recompute re-runs the outer linear and the inner checkpoint's
    # forward; the inner one's own recompute re-runs its linear once more.
    assert (measured.forward, measured.backward, measured.recompute) == (
        small + large,
        2 * small + 2 * large,
        small + 2 * large,
    )


def test_double_backward_through_no_checkpoint_is_backward_not_recompute() -> None:
    # create_graph=True runs gradient work with grad enabled, as a recompute does
    model = mlp()
    x = torch.randn(32, 64, requires_grad=True)

    def penalty() -> None:
        (grad_x,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        grad_x.pow(2).sum().backward()

    measured = measure(penalty)
    assert measured.recompute == 0
    assert measured.backward > BACKWARD


def test_selective_checkpointing_recomputes_only_what_it_did_not_save() -> None:
    # The first linear (with bias: addmm) is recomputed, the second (bias-free: mm)
    # saved by the policy: its output comes from the cache, never re-run.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64, bias=False))
    x = torch.randn(32, 64, requires_grad=True)

    def policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
        if op is torch.ops.aten.mm.default:
            return CheckpointPolicy.MUST_SAVE
        return CheckpointPolicy.PREFER_RECOMPUTE

    def step() -> None:
        checkpoint(
            model,
            x,
            use_reentrant=False,
            early_stop=False,  # else the recompute stops before the cached mm anyway
            context_fn=lambda: create_selective_checkpoint_contexts(policy),
        ).sum().backward()

    measured = measure(step, model)
    # forward: addmm + mm, LINEAR each; backward: two products per linear;
    # recompute: the addmm only
    assert (measured.forward, measured.backward, measured.recompute) == (
        FORWARD,
        BACKWARD,
        LINEAR,
    )
    assert measured.modules["Sequential.0"].recompute == LINEAR
    assert measured.modules["Sequential.2"].recompute == 0


def mlp_step_on(device: str, checkpointing: dict[str, Any]) -> Measurement:
    with torch.device(device):
        model = mlp()
        x = torch.randn(32, 64, requires_grad=True)
    return measure(lambda: train_step(model, x, **checkpointing), model)


@pytest.mark.parametrize("checkpointing", [s[0] for s in STYLES.values()], ids=STYLES)
def test_meta_and_fake_tensors_recompute_like_cpu(checkpointing: dict[str, Any]) -> None:
    cpu = mlp_step_on("cpu", checkpointing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # checkpoint: no RNG state to keep on meta
        meta = mlp_step_on("meta", checkpointing)
        with FakeTensorMode():
            fake = mlp_step_on("cpu", checkpointing)
    assert meta == cpu
    assert fake == cpu


@pytest.mark.slow  # importing transformers
def test_hugging_face_gradient_checkpointing_recomputes_each_decoder_layer() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=100, bos_token_id=0, eos_token_id=1, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).train()
    tokens = torch.randint(2, 100, (1, 6))

    def measured(gradient_checkpointing: dict[str, bool] | None) -> Measurement:
        # transformers 5 warns that the method has a new name, and that use_cache is off
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if gradient_checkpointing is not None:
                model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs=gradient_checkpointing
                )
            counted = measure(lambda: model(tokens, labels=tokens).loss.backward(), model)
            model.gradient_checkpointing_disable()
        return counted

    # T = 6 tokens. Per decoder layer, the linears' in*out: q and o 32*32, k and v
    # 32*16 (2 KV heads of 8), gate and up 32*64, down 64*32: 9,216, so 2*6*9,216 =
    # 110,592; SDPA 4*B*S*S*d = 4*1*6*6*32 = 4,608. A layer's forward: 115,200.
    layer, down_proj = 110_592 + 4_608, 2 * 6 * 64 * 32
    lm_head = 2 * 6 * 32 * 100
    plain = measured(None)
    assert (plain.forward, plain.recompute) == (2 * layer + lm_head, 0)
    reentrant = measured({"use_reentrant": True})
    # each layer re-runs whole
    assert reentrant.recompute == 2 * layer == 230_400
    non_reentrant = measured({"use_reentrant": False})
    # early stop: each layer's last product, down_proj, is not re-run (its input is saved)
    assert non_reentrant.recompute == 2 * (layer - down_proj) == 181_248
    for counted, per_layer in ((reentrant, layer), (non_reentrant, layer - down_proj)):
        assert (counted.forward, counted.backward) == (plain.forward, plain.backward)
        for index in (0, 1):
            row = counted.modules[f"LlamaForCausalLM.model.layers.{index}"]
            assert (row.forward, row.recompute) == (layer, per_layer)
        assert counted.modules["LlamaForCausalLM.lm_head"].recompute == 0


def composable_checkpoint(block: nn.Module) -> nn.Module:
    from torch.distributed._composable.checkpoint_activation import (
        checkpoint as checkpoint_in_place,
    )

    checkpoint_in_place(block)
    return block


def wrapped_checkpoint(block: nn.Module) -> nn.Module:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    return checkpoint_wrapper(block)


@pytest.mark.skipif(not dist.is_available(), reason="torch without distributed")
@pytest.mark.parametrize(
    "checkpointed", [composable_checkpoint, wrapped_checkpoint], ids=["checkpoint", "wrapper"]
)
def test_fsdp2_with_checkpointed_blocks_recomputes_their_forward(
    checkpointed: Callable[[nn.Module], nn.Module],
) -> None:
    from torch.distributed.fsdp import fully_shard

    x = torch.randn(8, 64)  # needs no grad: the first block takes its weight's grad only
    with fake_world(4) as mesh:
        torch.manual_seed(0)
        model = nn.Sequential(
            *(
                checkpointed(nn.Sequential(nn.Linear(n_in, n_out, bias=False), nn.ReLU()))
                for n_in, n_out in ((64, 256), (256, 64))
            )
        )
        for block in model:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        measured = measure(lambda: model(x).sum().backward(), model)
    # forward: 2*8*64*256 per block, 262,144 each; backward: both weight grads and the
    # second block's input grad, 786,432. Each block's ReLU saves its output, so the
    # recompute re-runs each block's product, early stop or not: the forward again.
    product = 2 * 8 * 64 * 256
    assert (measured.forward, measured.backward, measured.recompute) == (
        2 * product,
        3 * product,
        2 * product,
    )
    assert measured.modules["Sequential.0"].recompute == product
    assert measured.modules["Sequential.1"].recompute == product


def test_flops_per_token_leaves_recompute_out() -> None:
    model = mlp()
    x = torch.randn(32, 64, requires_grad=True)
    flops = Flops()
    with flops(model, tokens=32):
        train_step(model, x, use_reentrant=True)
    measured = flops.measurement
    assert flops.recompute == FORWARD
    assert measured.tokens == 32
    # the model's parameters: 64*256 + 256 + 256*64 + 64 = 33,088
    assert measured.parameters == 33_088
    # (forward + backward) / tokens = 6,291,456 / 32; 6*N = 198,528 for comparison
    assert measured.flops_per_token == (FORWARD + BACKWARD) / 32 == 196_608


def test_tokens_add_up_over_blocks_and_must_be_positive() -> None:
    model = mlp()
    x = torch.randn(32, 64)
    flops = Flops()
    for _ in range(2):
        with flops(model, tokens=32):
            model(x)
    assert (flops.measurement.tokens, flops.measurement.parameters) == (64, 33_088)
    assert flops.measurement.flops_per_token == 2 * FORWARD / 64
    with pytest.raises(TypeError, match=r"flops\(tokens=...\): expected a positive int, got 0"):
        flops(model, tokens=0)
    with Flops()(model) as untold:
        model(x)
    assert untold.measurement.flops_per_token is None
