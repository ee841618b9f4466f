"""``pytest_flops.count`` where a call reads values: kept tensors, balanced routing, clear errors.

Small integer and bool tensors stay real while floating-point ones are
stand-ins; where a stand-in picks indices (a router's topk) they take
balanced values and the measurement notes it; where a call needs a
stand-in's values it fails naming the op and the module. Real transformers
models built from small configs, counted against their CPU runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal

import pytest
import torch
from torch import nn
from torch._ops import OpOverload
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode

import pytest_flops
from pytest_flops import FlopCounterMode, Measurement
from pytest_flops.counting.balanced_routing import (
    BALANCED_ROUTING,
    BalancedRouting,
    balanced_indices,
)
from pytest_flops.counting.dry_run import StandInLeakError, ValuesNeededError
from pytest_flops.counting.elementwise_layout import ELEMENTWISE_LAYOUT_OPS
from pytest_flops.counting.stand_ins import CountFakeMode

transformers = pytest.importorskip("transformers")

DEVICES: tuple[Literal["meta", "fake"], ...] = ("meta", "fake")


def on_cpu(step: Callable[..., object], *args: Any) -> Measurement:
    with FlopCounterMode(display=False) as counter:
        step(*args)
    return counter.to_measurement()


def lm_train_step(model: nn.Module, inputs: dict[str, torch.Tensor]) -> None:
    model(**inputs).logits.float().sum().backward()


# -- values the model reads while it prepares its inputs -------------------------------


def small_llama() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, -3:] = 0  # padding: the mask code sums it and calls .item()
    return model, {"input_ids": torch.randint(0, 64, (2, 8)), "attention_mask": mask}


@pytest.mark.parametrize("device", DEVICES)
def test_a_padding_mask_keeps_its_values(device: Literal["meta", "fake"]) -> None:
    model, inputs = small_llama()
    expected = on_cpu(lm_train_step, model, inputs)
    model.zero_grad(set_to_none=True)
    # T = 16 tokens, d = 32, kv = 2*8 = 16, ffn = 48, vocab = 64: linears forward
    # 2*T*(2*d*d + 2*d*kv + 3*d*ffn + d*vocab) = 2*16*(2048 + 1024 + 4608 + 2048) = 311,296,
    # three times that with backward; attention 4*B*H*S*S*hd = 4*2*4*8*8*8 = 16,384
    # forward and 2.5x that backward
    assert expected.by_op == {
        "aten.mm": 3 * 311_296,
        "fused.scaled_dot_product_attention": 16_384,
        "fused.scaled_dot_product_attention_backward": 40_960,
    }
    measured = pytest_flops.count(lm_train_step, model, inputs, device=device)
    assert measured == expected
    assert measured.notes == ()  # no convention: the mask's values were real
    assert all(p.grad is None for p in model.parameters())


def test_kept_tensors_are_copies_and_item_nonzero_unique_work() -> None:
    seen: list[int] = []

    def step(weight: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        ids.add_(1)  # written in place: on the copy only
        present = ids.unique()  # data-dependent shapes, from real values
        seen.append(int(ids.max().item()))
        rows = weight[present[present.nonzero().squeeze(1)]]
        return rows @ weight.T

    ids = torch.tensor([[0, 2, 2], [3, 0, 4]])
    measured = pytest_flops.count(step, torch.randn(6, 4), ids)
    # ids + 1 = [[1, 3, 3], [4, 1, 5]]: unique 1, 3, 4, 5, all nonzero: 4 rows;
    # (4, 4) @ (4, 6): 2*4*4*6 = 192
    assert measured.by_op == {"aten.mm": 192}
    assert seen == [5]
    assert ids.tolist() == [[0, 2, 2], [3, 0, 4]]


@pytest.mark.parametrize("device", DEVICES)
def test_a_kept_bool_mask_selects_rows_of_stand_ins(device: Literal["meta", "fake"]) -> None:
    # HiggsAudio normalizes the audio tokens' rows apart: hidden[mask], and writes back
    def step(weight: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = x @ weight
        selected = hidden[mask]
        hidden[mask] = selected * 2
        return selected @ weight

    weight, x = torch.randn(4, 4), torch.randn(2, 5, 4)
    mask = torch.tensor([[True, False, True, True, False], [False] * 5])
    measured = pytest_flops.count(step, weight, x, mask, device=device)
    # (2, 5, 4) @ (4, 4): 2*10*4*4 = 320; the 3 selected rows @ (4, 4): 2*3*4*4 = 96
    assert measured.by_op == {"aten.mm": 416}


def test_a_stand_in_moved_to_the_cpu_stays_a_stand_in() -> None:
    def step(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        hidden = (x @ weight).to("cpu")  # as code that gathers outputs on the host does
        assert hidden.is_meta
        return hidden @ weight

    measured = pytest_flops.count(step, torch.randn(4, 4), torch.randn(3, 4))
    assert measured.by_op == {"aten.mm": 2 * 2 * 3 * 4 * 4}  # two (3, 4) @ (4, 4)


def test_positions_made_on_meta_are_real() -> None:
    def step(hidden: torch.Tensor) -> torch.Tensor:
        # transformers makes positions on the device of its activations
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        assert positions.device.type == "cpu" and positions[-1].item() == 4
        return hidden @ hidden.transpose(1, 2)

    measured = pytest_flops.count(step, torch.randn(2, 5, 3))
    assert measured.total == 2 * 2 * 5 * 3 * 5  # bmm of (2, 5, 3) @ (2, 3, 5)


def test_a_float_mask_made_on_meta_shadows_its_values() -> None:
    def step(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mask = torch.ones(x.shape[:-1], device=x.device)  # on meta: a stand-in
        assert mask.is_meta
        assert bool(mask.all()) and int(mask.sum().item()) == 6  # its values are known
        row = mask[0]  # a view, whose values are known too
        hidden = x @ weight
        mask.mul_(hidden[..., 0])  # written with a stand-in's data: values unknown now
        for written in (mask, row):
            with pytest.raises(ValuesNeededError, match="_local_scalar_dense"):
                written.sum().item()
        return hidden

    measured = pytest_flops.count(step, torch.randn(4, 4), torch.randn(2, 3, 4))
    # (2, 3, 4) @ (4, 4): 2*6*4*4 = 192
    assert measured.by_op == {"aten.mm": 192}


@pytest.mark.parametrize("device", DEVICES)
def test_bart_counts_with_the_decoder_mask_it_makes(device: Literal["meta", "fake"]) -> None:
    # Without a decoder mask, BART's decoder makes one of ones on the embeddings'
    # device and asks .all() of it to skip the mask: a stand-in on meta.
    config = transformers.BartConfig(
        vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=32,
        decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2,
        max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BartModel(config)
    ids = torch.randint(3, 64, (2, 8))
    inputs = {"input_ids": ids, "decoder_input_ids": ids[:, :4]}
    expected = on_cpu(lambda: model(**inputs))
    assert pytest_flops.count(model, **inputs, device=device) == expected


@pytest.mark.parametrize("device", DEVICES)
def test_a_large_buffer_made_in_the_call_is_a_stand_in(device: Literal["meta", "fake"]) -> None:
    def step(x: torch.Tensor) -> torch.Tensor:
        cache = torch.zeros(4096, 2048)  # 8M elements, over the 4M kept: no memory
        ids = torch.zeros(4096, dtype=torch.long)  # small: real
        assert isinstance(cache, FakeTensor) if device == "fake" else cache.is_meta
        assert type(ids) is torch.Tensor and ids.device.type == "cpu"
        return x @ cache[:4]

    measured = pytest_flops.count(step, torch.randn(3, 4), device=device)
    assert measured.by_op == {"aten.mm": 2 * 3 * 4 * 2048}


def test_count_leaves_the_random_state_as_it_was() -> None:
    def step(weight: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(3, 3)  # a small CPU tensor: kept, drawn for real
        return weight @ noise

    torch.manual_seed(7)
    pytest_flops.count(step, torch.randn(3, 3))
    after_count = torch.rand(1)
    torch.manual_seed(7)
    torch.randn(3, 3)
    assert torch.equal(after_count, torch.rand(1))


# -- values that nothing has -----------------------------------------------------------


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.proj(x) > 0).any():  # a branch on activations: no stand-in has it
            return self.proj(x)
        return x


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate = Gated()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x)


@pytest.mark.parametrize(
    ("device", "advice"),
    [("meta", 'count with device="fake", or run it for real'), ("fake", "run it for real")],
)
def test_a_call_that_needs_activation_values_names_the_op_and_module(
    device: Literal["meta", "fake"], advice: str
) -> None:
    with pytest.raises(ValuesNeededError) as raised:
        pytest_flops.count(Outer(), torch.randn(2, 4), device=device)
    message = str(raised.value)
    assert f"pytest_flops.count(device={device!r})" in message
    assert "aten._local_scalar_dense.default in Outer.gate needs the values" in message
    assert advice in message


# -- routing: balanced where stand-ins pick the experts --------------------------------


def test_balanced_indices() -> None:
    # 4 tokens, top-2 of 4 experts: token t takes 2t, 2t+1 (mod 4): each expert twice
    assert balanced_indices((4, 2), -1, 4, spread=True).tolist() == [
        [0, 1], [2, 3], [0, 1], [2, 3],
    ]  # fmt: skip
    # a sort's indices: the identity permutation of every row
    assert balanced_indices((2, 3), 1, 3, spread=False).tolist() == [[0, 1, 2], [0, 1, 2]]
    # argmax over dim 0 of a (3, 2) tensor: one pick per column, spread over the 3 rows
    assert balanced_indices((2,), 0, 3, spread=True).tolist() == [0, 1]


class LoopedExperts(nn.Module):
    """Top-2 of 4 experts, each its own Linear and module row, run token group by group."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(8, 4, bias=False)
        self.experts = nn.ModuleList(nn.Linear(8, 8, bias=False) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, chosen = self.router(x).topk(2, dim=-1)
        out = torch.zeros_like(x)
        for index, expert in enumerate(self.experts):
            tokens, _ = torch.where(chosen == index)  # data-dependent: how many tokens
            if tokens.numel():
                out = out.index_add(0, tokens, expert(x[tokens]))
        return out


@pytest.mark.parametrize("device", DEVICES)
def test_routing_on_stand_ins_is_balanced_and_noted(device: Literal["meta", "fake"]) -> None:
    torch.manual_seed(0)
    model, x = LoopedExperts(), torch.randn(6, 8)
    expected = on_cpu(model, x)
    measured = pytest_flops.count(model, x, device=device)
    assert measured.notes == (BALANCED_ROUTING,)
    # the total is routing's own: router 2*6*8*4 = 384, and 6 tokens x 2 experts
    # through an (8 -> 8) Linear, 2*12*8*8 = 1,536, however they are routed
    assert measured.total == expected.total == 384 + 1_536
    # balanced: every expert gets 6*2/4 = 3 tokens, 2*3*8*8 = 384 FLOPs
    for index in range(4):
        assert measured.modules[f"LoopedExperts.experts.{index}"].forward == 384


def test_a_cpu_run_routed_by_the_convention_counts_as_stand_ins() -> None:
    torch.manual_seed(0)
    model, x = LoopedExperts(), torch.randn(6, 8)
    with BalancedRouting(), FlopCounterMode(display=False) as counter:
        model(x)
    routed = counter.to_measurement()
    # token t's experts are 2t, 2t+1 (mod 4): 3 tokens each, 2*3*8*8 = 384 FLOPs
    for index in range(4):
        assert routed.modules[f"LoopedExperts.experts.{index}"].forward == 384
    for device in DEVICES:
        assert pytest_flops.count(model, x, device=device) == routed, device


class CastsItsRouter(nn.Module):
    """Converts a submodule in its forward, as Switch Transformers' router does."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.router = self.router.to(torch.float64)  # a conversion, then a no-op
        return self.router(x.double())


@pytest.mark.parametrize("device", DEVICES)
def test_a_module_converted_in_the_call_counts(device: Literal["meta", "fake"]) -> None:
    # module.to() swaps a fake parameter for its converted copy, which torch refused
    # for the weakrefs its fake mode keeps to every fake tensor
    model, x = CastsItsRouter(), torch.randn(6, 8)

    def twice(model: nn.Module, x: torch.Tensor) -> None:
        model(x)
        model(x)

    measured = pytest_flops.count(twice, model, x, device=device)
    # (6, 8) @ (8, 4) with a bias, twice: 2 * 2*6*8*4 = 768
    assert measured.by_op == {"aten.addmm": 768}
    assert model.router.weight.dtype == torch.float32  # the original, not converted


def test_a_fake_count_converts_modules_after_another_thread_s_count_ended() -> None:
    model, x = CastsItsRouter(), torch.randn(6, 8)
    swap_tensors = torch.utils.swap_tensors
    started, go = threading.Event(), threading.Event()

    def waits(model: nn.Module, x: torch.Tensor) -> None:
        started.set()
        go.wait(timeout=60)

    thread = threading.Thread(
        target=pytest_flops.count, args=(waits, model, x), kwargs={"device": "fake"}
    )
    thread.start()

    def after_the_other_count(model: nn.Module, x: torch.Tensor) -> object:
        go.set()
        thread.join(timeout=60)  # the first count to start ends, this one goes on
        return model(x)  # its router converts itself: the swap must still forget

    try:
        assert started.wait(timeout=60)
        measured = pytest_flops.count(after_the_other_count, model, x, device="fake")
    finally:
        go.set()
        thread.join(timeout=60)
    assert measured.by_op == {"aten.addmm": 384}  # (6, 8) @ (8, 4): 2*6*8*4
    assert torch.utils.swap_tensors is swap_tensors


def small_switch_transformers() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.SwitchTransformersConfig(
        vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_decoder_layers=1,
        num_heads=2, num_experts=4, expert_capacity=64, encoder_sparse_step=1,
        decoder_sparse_step=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.SwitchTransformersModel(config)
    ids = torch.randint(0, 64, (2, 8))
    return model, {"input_ids": ids, "decoder_input_ids": ids[:, :4]}


@pytest.mark.parametrize("device", DEVICES)
def test_switch_transformers_counts_as_cpu_routed_by_the_convention(
    device: Literal["meta", "fake"],
) -> None:
    # Its router casts itself with .to() in every forward (it failed on fake), and
    # each expert is a module of its own, whose row follows the routing.
    model, inputs = small_switch_transformers()
    with FlopCounterMode(display=False) as counter:
        model(**inputs)
    own_routing = counter.to_measurement()
    with BalancedRouting(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    routed = counter.to_measurement()
    measured = pytest_flops.count(model, **inputs, device=device)
    assert measured == routed
    assert measured.notes == (BALANCED_ROUTING,)
    assert measured.total == own_routing.total  # top-1, within capacity: routing moves no work
    experts = "SwitchTransformersModel.{}.block.0.layer.{}.mlp.experts.expert_{}"
    for index in range(4):
        # an expert's wi (16 -> 32) and wo (32 -> 16): 2*16*32*2 = 2,048 FLOPs a token;
        # the encoder's 16 tokens, 4 each: 8,192; the decoder's 8 tokens, 2 each: 4,096
        assert measured.modules[experts.format("encoder", 1, index)].forward == 8_192
        assert measured.modules[experts.format("decoder", 2, index)].forward == 4_096


def small_qwen3_moe(dtype: torch.dtype) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.Qwen3MoeConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
        num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        num_experts=4, num_experts_per_tok=2, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.Qwen3MoeForCausalLM(config).to(dtype)
    return model, {"input_ids": torch.randint(0, 64, (2, 8))}


@pytest.mark.skipif(not hasattr(torch, "_grouped_mm"), reason="this torch has no _grouped_mm")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_a_moe_counts_on_stand_ins_as_on_cpu(dtype: torch.dtype) -> None:
    # Qwen3-MoE runs its experts through torch._grouped_mm, whose meta kernel
    # refuses float32 outside counting.
    model, inputs = small_qwen3_moe(dtype)
    expected = on_cpu(lm_train_step, model, inputs)
    model.zero_grad(set_to_none=True)
    # T = 16 tokens, d = 32, q = o = 4*8 = 32, kv = 2*8 = 16, 4 experts, vocab 64.
    # Forward: attention linears 2*T*d*(32 + 16 + 16 + 32) = 98,304, router
    # 2*T*d*4 = 4,096, lm_head 2*T*d*64 = 65,536 (mm: 167,936); experts 16 tokens
    # x top-2 = 32 rows through gate_up (32 -> 2*16) and down (16 -> 32):
    # 32*(2*32*32 + 2*16*32) = 98,304 (grouped_mm); attention 4*B*H*S*S*hd =
    # 4*2*4*8*8*8 = 16,384. Forward 282,624. Backward: every matmul twice,
    # attention 2.5x: 2*(167,936 + 98,304) + 40,960 = 573,440.
    assert (expected.forward, expected.backward) == (282_624, 573_440)
    assert expected.by_op["aten._grouped_mm"] == 3 * 98_304
    for device in DEVICES:
        measured = pytest_flops.count(lm_train_step, model, inputs, device=device)
        assert measured == expected, device
        assert measured.notes == (BALANCED_ROUTING,)


# -- tensors in containers, and state outside the call ----------------------------------


def small_levit() -> tuple[nn.Module, torch.Tensor]:
    config = transformers.LevitConfig(
        image_size=64, patch_size=16, hidden_sizes=[16, 32, 48], num_attention_heads=[2, 2, 2],
        depths=[1, 1, 1], key_dim=[8, 8, 8],
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.LevitModel(config).eval(), torch.randn(1, 3, 64, 64)


def levit_forward(model: nn.Module, pixels: torch.Tensor) -> object:
    return model(pixel_values=pixels)


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_tensors_in_a_modules_dict_are_replaced(grad: bool) -> None:
    # LeViT caches its attention biases in a dict per device; an eval forward with
    # gradients on leaves a non-leaf tensor there, under no_grad a plain one.
    model, pixels = small_levit()
    with torch.set_grad_enabled(grad):
        expected = on_cpu(levit_forward, model, pixels)
    caches: list[dict[str, torch.Tensor]] = [
        cache
        for module in model.modules()
        if isinstance(cache := vars(module).get("attention_bias_cache"), dict)
    ]
    assert caches and all(cache.keys() == {"cpu"} for cache in caches)
    assert expected.total > 0
    for device in DEVICES:
        counted = pytest_flops.count(levit_forward, model, pixels, device=device)
        assert counted.without_bytes() == expected.without_bytes()
        # A known gap: the stand-ins' attention bias cache is not the original's state,
        # so a stand-in forward indexes the biases where the CPU one read its cache, or
        # the other way round: one op with no FLOPs, whose bytes differ.
        moved = {
            op for op in counted.bytes_by_op.keys() | expected.bytes_by_op.keys()
            if counted.bytes_by_op.get(op) != expected.bytes_by_op.get(op)
        }  # fmt: skip
        assert moved <= {"aten.index"}
    assert all(cache.keys() == {"cpu"} for cache in caches)  # the originals' caches


def small_dinov3() -> tuple[nn.Module, torch.Tensor]:
    config = transformers.DINOv3ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
        num_hidden_layers=1, num_attention_heads=2, num_register_tokens=2,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.DINOv3ViTModel(config).eval(), torch.randn(1, 3, 32, 32)


def test_a_fake_count_leaves_a_device_keyed_cache_real() -> None:
    # DINOv3 caches its patch coordinates in a module-level lru_cache keyed on the
    # device: a fake count on "cpu" fills it with a tensor of its own making.
    model, pixels = small_dinov3()
    with torch.no_grad():
        before = model(pixel_values=pixels).last_hidden_state
    expected = on_cpu(lambda: model(pixel_values=pixels))
    for _ in range(2):  # and a second fake count meets what the first left
        assert pytest_flops.count(model, pixels, device="fake") == expected
    with torch.no_grad():
        assert torch.equal(model(pixel_values=pixels).last_hidden_state, before)


_CACHE: dict[tuple[int, ...], torch.Tensor] = {}


class CachesActivations(nn.Module):
    """User code that keeps a computed activation in a global: a count cannot guard it."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape not in _CACHE:
            _CACHE[x.shape] = self.proj(x).detach()
        return self.proj(x) + _CACHE[x.shape]


def test_a_stand_in_kept_by_user_state_fails_clearly_when_read() -> None:
    _CACHE.clear()
    model, x = CachesActivations(), torch.randn(2, 3)
    pytest_flops.count(model, x, device="fake")
    with pytest.raises(StandInLeakError, match=r"earlier pytest_flops.count\(device='fake'\)"):
        model(x)  # the real model meets the stand-in left in _CACHE
    with pytest.raises(StandInLeakError, match="a cache, a global"):
        pytest_flops.count(model, x, device="fake")  # as does the next count
    _CACHE.clear()
    assert model(x).shape == (2, 3)


# -- the CPU's layouts on meta ---------------------------------------------------------


def small_segformer() -> tuple[nn.Module, torch.Tensor]:
    config = transformers.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32],
        num_attention_heads=[1, 2], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2],
        decoder_hidden_size=32,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.SegformerModel(config).eval(), torch.randn(2, 3, 32, 32)


def test_meta_depthwise_convolution_keeps_the_cpus_layout_and_op_rows() -> None:
    # SegFormer's Mix-FFN runs a depthwise convolution on a transposed sequence
    # (channels-last); the CPU answers channels-last (for a batch over 1), so fc2
    # after its flatten(2).transpose(1, 2) books addmm, where a contiguous meta
    # output made mm. Stage 0: 2 images x 8*8 tokens, 32 -> 16: 2*128*32*16;
    # stage 1: 2 x 4*4 tokens, 64 -> 32: 2*32*64*32; 131,072 each.
    model, pixels = small_segformer()
    expected = on_cpu(lambda: model(pixel_values=pixels))
    for stage in (0, 1):
        fc2 = expected.modules[f"SegformerModel.stages.{stage}.blocks.0.mlp.fc2"]
        assert fc2.by_op == {"aten.addmm": 131_072}
    for device in DEVICES:
        assert pytest_flops.count(model, pixels, device=device) == expected


def layer_norm_step(norm: nn.Module, x: torch.Tensor) -> None:
    weights = torch.arange(48.0).view(6, 8)
    (norm(x).transpose(1, 2).contiguous() * weights).sum().backward()


def test_a_layer_norm_gradient_takes_the_cpus_layout_on_meta_and_fake() -> None:
    # The output's gradient reaches the layer norm transposed. The CPU kernel writes
    # x's gradient contiguous; torch's meta kernel gave it the transposed layout, so
    # autograd copied it into x.grad's layout: an aten.copy_ of 2*8*6 floats read and
    # written (768 bytes) on meta and fake only (SegFormer's train step, in clones).
    norm = nn.LayerNorm(6)
    x = torch.randn(2, 8, 6, requires_grad=True)
    expected = on_cpu(layer_norm_step, norm, x)
    assert "aten.copy_" not in expected.bytes_by_op
    for device in DEVICES:
        assert pytest_flops.count(layer_norm_step, norm, x, device=device) == expected


def softplus_gate_step(x: torch.Tensor, weight: torch.Tensor) -> None:
    # Doge's gate: a softplus of a projection, used transposed
    gate = nn.functional.softplus(x @ weight)
    (gate.transpose(1, 2) * torch.ones(2, 2, 16)).sum().backward()


def test_a_softplus_gradient_takes_the_cpus_layout_on_meta_and_fake() -> None:
    # The softplus's output gradient arrives transposed. The CPU kernel (TensorIterator)
    # writes the input's gradient in that layout, and the matmul's backward copies it
    # contiguous before its mm: a clone reading and writing 2*16*2 floats, 512 bytes.
    # torch's meta kernel (a decomposition) wrote it contiguous: no clone on meta, fake.
    x, weight = torch.randn(2, 16, 4), torch.randn(4, 2, requires_grad=True)
    expected = on_cpu(softplus_gate_step, x, weight)
    assert expected.bytes_by_op["aten.clone"] == 512
    for device in DEVICES:
        assert pytest_flops.count(softplus_gate_step, x, weight, device=device) == expected


@pytest.mark.parametrize("op", sorted(ELEMENTWISE_LAYOUT_OPS, key=str), ids=str)
def test_pointwise_outputs_take_the_cpus_layout_on_meta_and_fake(op: OpOverload) -> None:
    # Each of these ops' meta kernel laid its output out after its second operand;
    # TensorIterator follows the first, for either operand transposed.
    extra = (1.0, 20.0) if op is torch.ops.aten.softplus_backward.default else ()
    for first_transposed in (True, False):
        operands = [torch.rand(2, 4, 3) + 0.5, torch.rand(2, 3, 4).transpose(1, 2) + 0.5]
        if first_transposed:
            operands.reverse()
        cpu_strides = op(*operands, *extra).stride()
        fake_mode = CountFakeMode()
        fakes = [fake_mode.from_tensor(operand) for operand in operands]
        metas = [torch.empty_strided(t.shape, t.stride(), device="meta") for t in operands]
        with FlopCounterMode(display=False):
            assert op(*metas, *extra).stride() == cpu_strides
            with fake_mode:
                assert op(*fakes, *extra).stride() == cpu_strides


def view_written_in_place_step(x: torch.Tensor, scale: torch.Tensor) -> None:
    y = x * 2
    view = y.view(4, 8)[1:, :4]
    view.mul_(scale)  # autograd rebuilds the view's gradient function
    (view * 3).sum().backward()


def test_a_view_written_in_place_counts_as_cpu_on_meta_not_on_fake() -> None:
    # docs/zoo.md's limit (Funnel). The CPU's backward of the rebuilt view is one
    # AsStridedBackward0: new_zeros (writes 32 floats, 128; it takes only the shape of
    # the 3*4 gradient) and a copy_ into its strided window (48 read, 48 written). A
    # FakeTensor's replays the views: slice_backward to (3, 8) (48 + 96) and to (4, 8)
    # (96 + 128), 368 bytes. Meta tensors are plain, and count as the CPU.
    x, scale = torch.randn(32, requires_grad=True), torch.randn(3, 4)
    expected = on_cpu(view_written_in_place_step, x, scale)
    assert pytest_flops.count(view_written_in_place_step, x, scale, device="meta") == expected
    fake = pytest_flops.count(view_written_in_place_step, x, scale, device="fake")
    assert fake.without_bytes() == expected.without_bytes()
    ops = fake.bytes_by_op.keys() | expected.bytes_by_op.keys()
    moved = {
        op: (fake.bytes_by_op.get(op, 0), expected.bytes_by_op.get(op, 0))
        for op in ops
        if fake.bytes_by_op.get(op) != expected.bytes_by_op.get(op)
    }
    assert moved == {
        "aten.new_zeros": (0, 128),
        "aten.copy_": (expected.bytes_by_op["aten.copy_"] - 96, expected.bytes_by_op["aten.copy_"]),
        "aten.slice_backward": (368, 0),
    }


def resized_table_step(table: torch.Tensor, x: torch.Tensor) -> None:
    # RADIO's position table, resized as an image to the grid of the input
    grid = table.view(1, 8, 8, 4).permute(0, 3, 1, 2)
    resized = nn.functional.interpolate(grid, size=(2, 2), mode="bilinear")
    (x + resized.flatten(2).transpose(1, 2)).sum().backward()


def test_a_fake_view_takes_atens_strides() -> None:
    # The flatten's view gets, for its batch dimension of size 1, ATen's stride 4 on
    # the CPU and 16 on fake tensors. Its gradient's view back to (1, 4, 2, 2) then
    # looks channels-last on fake tensors only, so the upsample backward wrote the
    # table's gradient channels-last there: contiguous, and autograd did not copy it
    # into the table's layout, as on the CPU (an aten.copy_ of 64*4 floats read and
    # written, 2,048 bytes).
    table, x = nn.Parameter(torch.randn(1, 64, 4)), torch.randn(2, 4, 4)
    expected = on_cpu(resized_table_step, table, x)
    assert expected.bytes_by_op["aten.copy_"] == 2048
    for device in DEVICES:
        assert pytest_flops.count(resized_table_step, table, x, device=device) == expected


class MovesItsMask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        device = self.linear.weight.device
        mask = mask.to(device)  # already there on the CPU: .to returns it
        copied = mask.to(device, copy=True)
        keep = mask.to(device, torch.bool)  # a cast copies
        return self.linear(x) * keep[..., None] + copied[..., None]


@pytest.mark.parametrize("device", DEVICES)
def test_a_kept_mask_moved_to_the_parameters_device_moves_nothing(
    device: Literal["meta", "fake"],
) -> None:
    # A kept mask stays a real CPU tensor while the parameters' stand-ins are on meta:
    # .to(meta) used to copy it (a _to_copy of 2*4 int64, 128 bytes) where the CPU run
    # moves nothing. The copy asked for reads and writes 64 bytes each (128), and the
    # cast reads 64 and writes 2*4 bools (72).
    model, x = MovesItsMask(), torch.randn(2, 4, 8)
    mask = torch.ones(2, 4, dtype=torch.long)
    expected = on_cpu(model, x, mask)
    assert expected.bytes_by_op["aten._to_copy"] == 128 + 72
    to = torch.Tensor.to
    assert pytest_flops.count(model, x, mask, device=device) == expected
    assert torch.Tensor.to is to  # .to is torch's own again after the count


def test_counts_in_two_threads_keep_their_masks_and_leave_to_as_it_was() -> None:
    model, x = MovesItsMask(), torch.randn(2, 4, 8)
    mask = torch.ones(2, 4, dtype=torch.long)
    expected = on_cpu(model, x, mask)
    to = torch.Tensor.to
    started, go = threading.Event(), threading.Event()
    counted: list[Measurement] = []

    def waits_then_runs(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> object:
        started.set()
        go.wait(timeout=60)
        return model(x, mask)

    thread = threading.Thread(
        target=lambda: counted.append(pytest_flops.count(waits_then_runs, model, x, mask))
    )
    thread.start()
    try:
        assert started.wait(timeout=60)
        assert torch.ones(2).to("meta").is_meta  # this thread is not counting
        assert pytest_flops.count(model, x, mask) == expected  # a count that closes first
    finally:
        go.set()
        thread.join(timeout=60)
    assert counted == [expected]  # the other count still kept its mask on the CPU
    assert torch.Tensor.to is to


class MovesToItsMask(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = x * 2
        # transformers' mask functions move what they computed to the device of a kept
        # tensor (``.to(result.device)``, GIT): on the CPU, .to and .cpu() return it
        moved, gathered = hidden.to(mask.device), hidden.cpu()
        cast = hidden.to(mask.device, torch.float64)  # a cast copies, on any device
        return moved * gathered + cast * mask


@pytest.mark.parametrize("device", DEVICES)
def test_a_stand_in_moved_to_a_kept_tensors_device_moves_nothing(
    device: Literal["meta", "fake"],
) -> None:
    # Meta stands for the CPU: .to(cpu) and .cpu() of a meta stand-in used to copy it
    # (a _to_copy reading and writing 2*4*8 float32, 512 bytes each) where the CPU run
    # moves nothing. The cast reads 256 bytes and writes 2*4*8 float64 (512): 768.
    x, mask = torch.randn(2, 4, 8), torch.ones(2, 4, 8, dtype=torch.long)
    expected = on_cpu(MovesToItsMask(), x, mask)
    assert expected.bytes_by_op["aten._to_copy"] == 768
    cpu = torch.Tensor.cpu
    assert pytest_flops.count(MovesToItsMask(), x, mask, device=device) == expected
    assert torch.Tensor.cpu is cpu  # .cpu is torch's own again after the count


def masks_its_first_patches(x: torch.Tensor) -> torch.Tensor:
    mask = torch.ones(2, 8, device=x.device)  # ViTMAE's, on the activations' device
    mask[:, :3] = 0
    return x * mask


@pytest.mark.parametrize("device", DEVICES)
def test_a_number_set_into_a_stand_in_fills_it_as_on_the_cpu(
    device: Literal["meta", "fake"],
) -> None:
    # The CPU's indexing makes the 0 a CPU scalar without an op, and fills the slice:
    # an aten.fill_ writing 2*3 floats (24 bytes) and reading the scalar (4). On meta
    # it made the scalar there (aten.scalar_tensor, 4 bytes) and copied it (aten.copy_).
    x = torch.randn(2, 8)
    expected = on_cpu(masks_its_first_patches, x)
    assert expected.bytes_by_op["aten.fill_"] == 28
    assert pytest_flops.count(masks_its_first_patches, x, device=device) == expected


def test_a_mask_moved_to_parameters_on_another_device_is_copied() -> None:
    # Parameters on the meta device itself: the real run copies the CPU mask to them
    # (another 128 bytes), and so does the count, whose meta stands for that device.
    model, x = MovesItsMask().to("meta"), torch.randn(2, 4, 8, device="meta")
    mask = torch.ones(2, 4, dtype=torch.long)
    expected = on_cpu(model, x, mask)
    assert expected.bytes_by_op["aten._to_copy"] == 128 + 128 + 72
    assert pytest_flops.count(model, x, mask, device="meta") == expected


# -- ops that cost nothing, on a real model ---------------------------------------------


def small_sam() -> tuple[nn.Module, torch.Tensor]:
    # transformers' own SamModelTester sizes: a 12x12 patch grid in 14x14 windows;
    # every attention resizes its relative-position tables with a linear interpolation
    vision = transformers.SamVisionConfig(
        image_size=24, patch_size=2, hidden_size=36, intermediate_size=72, output_channels=32,
        num_hidden_layers=2, num_attention_heads=4, window_size=14, global_attn_indexes=[2],
        num_pos_feats=16,
    )  # fmt: skip
    prompt = transformers.SamPromptEncoderConfig(
        image_size=24, patch_size=2, mask_input_channels=4, hidden_size=32
    )
    decoder = transformers.SamMaskDecoderConfig(
        hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=4,
        iou_head_hidden_dim=32,
    )  # fmt: skip
    config = transformers.SamConfig(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder
    )
    torch.manual_seed(0)
    return transformers.SamModel(config), torch.randn(2, 3, 24, 24)


def sam_train_step(model: nn.Module, pixels: torch.Tensor) -> None:
    outputs = model(pixel_values=pixels)
    (outputs.iou_scores.sum() + outputs.pred_masks.sum()).backward()


class SeenOps(TorchDispatchMode):
    """The names of the ops a call ran."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.names: set[str] = set()

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@pytest.mark.slow
def test_sam_counts_on_stand_ins_as_on_cpu_with_its_resized_positions_free() -> None:
    model, pixels = small_sam()
    with SeenOps() as seen:
        expected = on_cpu(sam_train_step, model, pixels)
    model.zero_grad(set_to_none=True)
    assert {"aten.upsample_linear1d", "aten.upsample_linear1d_backward"} <= seen.names
    assert expected.unsupported == {}  # both counted, as 0 FLOPs: resizing is not math
    # the patch embedding, Conv2d(3 -> 36, kernel 2, stride 2) onto 2 x 12x12:
    # 2 * (2*144) * 36 * (3*2*2) = 248,832
    patches = expected.modules["SamModel.vision_encoder.patch_embed.projection"]
    assert patches.forward == 248_832
    for device in DEVICES:
        assert pytest_flops.count(sam_train_step, model, pixels, device=device) == expected
