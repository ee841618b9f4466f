"""What runs uncounted shows up as unsupported: nothing for real models, custom ops until
they get a formula (ours, or one the user gave torch's counter)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from examples.models import LSTMLanguageModel, TinyGPT
from pytest_flops import FlopCounterMode, Measurement, register_flop_formula
from pytest_flops.counting.formulas import FLOP_FORMULAS, is_uncounted, scoped_flop_formula


def measure(step: Callable[[], Any]) -> Measurement:
    with FlopCounterMode(display=False) as mode:
        step()
    return mode.to_measurement()


def train_step(model: nn.Module, *inputs: torch.Tensor) -> Callable[[], None]:
    return lambda: model(*inputs).float().sum().backward()


def resnet18() -> Callable[[], None]:
    models = pytest.importorskip("torchvision.models")
    return train_step(models.resnet18(num_classes=10), torch.randn(2, 3, 32, 32))


def mobilenet(name: str) -> Callable[[], None]:
    # ReLU6 (hardtanh) in v2; hardswish and hardsigmoid in v3, whose kernels carry no
    # pointwise tag
    models = pytest.importorskip("torchvision.models")
    return train_step(getattr(models, name)(num_classes=10), torch.randn(2, 3, 64, 64))


def small_vit() -> Callable[[], None]:
    models = pytest.importorskip("torchvision.models")
    vit = models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    )
    return train_step(vit, torch.randn(2, 3, 32, 32))


def tiny_gpt() -> Callable[[], None]:
    return train_step(TinyGPT(), torch.randint(0, 64, (2, 16)))


def lstm_language_model() -> Callable[[], None]:
    return train_step(LSTMLanguageModel(), torch.randint(0, 64, (2, 12)))


def transformer_encoder_inference() -> Callable[[], None]:
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()
    x, padding = torch.randn(2, 6, 32), torch.tensor([[False] * 6, [False] * 4 + [True] * 2])

    def step() -> None:
        with torch.no_grad():
            encoder(x, src_key_padding_mask=padding)

    return step


def hugging_face(config_name: str, model_name: str, **config: Any) -> Callable[[], None]:
    transformers = pytest.importorskip("transformers")
    model = getattr(transformers, model_name)(getattr(transformers, config_name)(**config))
    tokens = torch.randint(0, 100, (2, 12))
    return lambda: model(tokens, labels=tokens).loss.backward()


MODELS: dict[str, Callable[[], Callable[[], None]]] = {
    "resnet18": resnet18,
    "vit": small_vit,
    "mobilenet_v2": lambda: mobilenet("mobilenet_v2"),
    "mobilenet_v3_small": lambda: mobilenet("mobilenet_v3_small"),
    "tiny_gpt": tiny_gpt,
    "lstm_lm": lstm_language_model,
    "transformer_encoder_eval_no_grad": transformer_encoder_inference,
    "hf_gpt2": lambda: hugging_face(
        "GPT2Config",
        "GPT2LMHeadModel",
        n_embd=32,
        n_layer=2,
        n_head=2,
        vocab_size=100,
        n_positions=32,
        bos_token_id=0,
        eos_token_id=0,
    ),
    "hf_llama": lambda: hugging_face(
        "LlamaConfig",
        "LlamaForCausalLM",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    ),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", MODELS)
def test_models_leave_nothing_unsupported(name: str) -> None:
    measured = measure(MODELS[name]())

    assert measured.unsupported == {}
    assert measured.forward > 0


ACTIVATIONS = [
    nn.ELU(), nn.SELU(), nn.CELU(), nn.LeakyReLU(), nn.Hardtanh(), nn.ReLU6(), nn.GLU(),
    nn.LogSigmoid(), nn.Softplus(), nn.Mish(), nn.PReLU(), nn.RReLU(), nn.Hardswish(),
    nn.Hardsigmoid(), nn.Softshrink(), nn.Hardshrink(), nn.SiLU(), nn.GELU(), nn.Softsign(),
    nn.Tanhshrink(), nn.Threshold(0.1, 0.0), nn.Sigmoid(), nn.Tanh(), nn.ReLU(),
]  # fmt: skip


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda module: type(module).__name__)
def test_activations_cost_nothing_and_are_not_blind_spots(activation: nn.Module) -> None:
    x = torch.randn(4, 8, requires_grad=True)
    measured = measure(lambda: activation(x).sum().backward())

    assert (measured.total, measured.unsupported) == (0, {})


def test_lstm_language_model_count() -> None:
    measured = measure(lstm_language_model())

    # 24 tokens. LSTM(32, 32): 2*24*(128*32 + 128*32) = 393,216 forward, 2x back;
    # head Linear(32, 64) on (B, T, 32), an mm: 2*24*32*64 = 98,304 forward, and
    # grad input + grad weight back
    assert measured.by_op == {
        "fused.rnn": 393_216,
        "fused.rnn_backward": 786_432,
        "aten.mm": 3 * 98_304,
    }


def test_matmul_variants_are_counted() -> None:
    def step() -> None:
        fp8 = torch.float8_e4m3fn
        one = torch.tensor(1.0)
        a, b = torch.randn(16, 32).to(fp8), torch.randn(8, 32).to(fp8).t()
        torch._scaled_mm(a, b, one, one, out_dtype=torch.float32)  # 2*16*32*8 = 8,192
        int8 = torch.randint(-4, 4, (32, 16), dtype=torch.int8)
        torch._int_mm(int8, torch.randint(-4, 4, (16, 8), dtype=torch.int8))  # 2*32*16*8
        torch.randn(4, 8).addmm_(torch.randn(4, 5), torch.randn(5, 8))  # 2*4*5*8 = 320
        torch.ops.aten._addmm_activation(
            torch.randn(8), torch.randn(4, 5), torch.randn(5, 8), use_gelu=True
        )  # 320

    assert measure(step).by_op == {
        "aten._scaled_mm": 8_192,
        "aten._int_mm": 8_192,
        "aten.addmm_": 320,
        "aten._addmm_activation": 320,
    }


def test_weight_only_quantized_matmuls_are_counted() -> None:
    x = torch.randn(4, 64, dtype=torch.bfloat16)

    def step() -> None:
        int8_weight = torch.randint(-8, 8, (32, 64), dtype=torch.int8)  # (N, K)
        torch.ops.aten._weight_int8pack_mm(x, int8_weight, torch.randn(32, dtype=torch.bfloat16))
        # the int4 weight is packed (the packing itself costs nothing): K comes from x,
        # N from the (4, 32) output; scales and zeros for 2 groups of 32 along K
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
            torch.randint(0, 16, (32, 64), dtype=torch.int32), 2
        )
        scales_and_zeros = torch.randn(2, 32, 2, dtype=torch.bfloat16)
        torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, 32, scales_and_zeros)

    measured = measure(step)
    # (4, 64) @ (64, 32) each: 2*4*64*32
    assert measured.by_op == {
        "aten._weight_int8pack_mm": 16_384,
        "aten._weight_int4pack_mm_for_cpu": 16_384,
    }
    assert measured.unsupported == {}


def test_random_ops_cost_nothing() -> None:
    def step() -> None:
        torch.bernoulli(torch.rand(3))
        nn.functional.dropout(torch.randn(4), 0.5)
        torch.empty(3).uniform_()
        torch.randperm(4)
        torch.multinomial(torch.rand(5), 2)

    measured = measure(step)

    assert (measured.total, measured.unsupported) == (0, {})


@torch.library.custom_op("pytest_flops_tests::doubled_matmul", mutates_args=())
def doubled_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b) * 2


@pytest.fixture
def doubled_matmul_op() -> Iterator[torch._ops.OpOverloadPacket]:
    packet = torch.ops.pytest_flops_tests.doubled_matmul
    yield packet
    FLOP_FORMULAS.pop(packet, None)  # the registry is global: leave it as found


def test_custom_op_is_unsupported_until_it_has_a_formula(
    doubled_matmul_op: torch._ops.OpOverloadPacket,
) -> None:
    a, b = torch.randn(4, 5), torch.randn(5, 6)
    mode = FlopCounterMode(display=False)

    with mode:
        doubled_matmul(a, b)
    assert (mode.get_total_flops(), dict(mode.unsupported_ops)) == (
        0,
        {"pytest_flops_tests.doubled_matmul": 1},
    )

    # registered after the mode was created: counts from its next block on
    @register_flop_formula(doubled_matmul_op)
    def doubled_matmul_flop(a_shape: Any, b_shape: Any, *, out_shape: Any) -> int:
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]

    with mode:
        doubled_matmul(a, b)
    measured = mode.to_measurement()
    assert measured.by_op == {"pytest_flops_tests.doubled_matmul": 240}  # 2*4*5*6
    assert measured.unsupported == {}


def test_hugging_face_generation_leaves_nothing_unsupported() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=100, bos_token_id=0, eos_token_id=1, pad_token_id=0,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config).eval()
    tokens = torch.randint(2, 100, (1, 6))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        measured = measure(
            lambda: model.generate(
                tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=3, do_sample=False
            )
        )

    assert measured.unsupported == {}
    assert measured.forward > 0


@torch.library.custom_op("pytest_flops_tests::scaled_product", mutates_args=())
def scaled_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 3 * (a @ b)


def test_a_formula_registered_with_torchs_registry_counts_for_the_users_own_op() -> None:
    # A user switching counters keeps the formula they gave torch's counter: for ops
    # of their own namespaces (never aten's, where our table alone decides).
    import torch.utils.flop_counter as torch_counter

    packet = torch.ops.pytest_flops_tests.scaled_product

    @torch_counter.register_flop_formula(packet)
    def scaled_product_flop(a_shape: Any, b_shape: Any, *args: Any, **kwargs: Any) -> int:
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]

    try:
        measured = measure(lambda: scaled_product(torch.randn(4, 5), torch.randn(5, 6)))
        assert measured.by_op == {"pytest_flops_tests.scaled_product": 240}  # 2*4*5*6
        assert measured.unsupported == {}
    finally:
        torch_counter.flop_registry.pop(packet)


def test_register_flop_formula_takes_an_overload_for_its_packet(
    doubled_matmul_op: torch._ops.OpOverloadPacket,
) -> None:
    @register_flop_formula(doubled_matmul_op.default)
    def doubled_matmul_flop(a_shape: Any, b_shape: Any, *, out_shape: Any) -> int:
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]

    assert FLOP_FORMULAS[doubled_matmul_op] is not None
    measured = measure(lambda: doubled_matmul(torch.randn(4, 5), torch.randn(5, 6)))
    assert measured.by_op == {"pytest_flops_tests.doubled_matmul": 240}


@pytest.mark.parametrize(
    "target",
    ["mm", torch.mm, 3, [torch.ops.aten.mm, "mm"]],
    ids=["a name", "a python function", "a number", "a list with a name"],
)
def test_register_flop_formula_refuses_what_is_no_op_with_torchs_error_type(target: Any) -> None:
    with pytest.raises(ValueError, match="expected each target to be an op") as raised:
        register_flop_formula(target)(lambda *shapes, out_shape: 0)
    assert "lambda" not in str(raised.value)  # it names the target, not the formula
    assert torch.ops.aten.mm in FLOP_FORMULAS  # and nothing was registered


def mm_count() -> Measurement:
    return measure(lambda: torch.mm(torch.randn(4, 5), torch.randn(5, 6)))


def test_a_second_formula_for_an_op_is_refused_unless_it_overrides(
    doubled_matmul_op: torch._ops.OpOverloadPacket,
) -> None:
    # a built-in: replacing it would change every later test's count
    with pytest.raises(RuntimeError, match=r"aten::mm already has a formula.*override=True"):
        register_flop_formula(torch.ops.aten.mm)(lambda *shapes, out_shape: 1)
    # by its qualified name too, and an earlier registration of the user's
    with pytest.raises(RuntimeError, match="aten::mm already has a formula"):
        register_flop_formula("aten::mm")(lambda *shapes, out_shape: 1)
    assert mm_count().by_op == {"aten.mm": 240}  # 2*4*5*6, untouched

    register_flop_formula(doubled_matmul_op)(lambda a, b, *, out_shape: 1)
    with pytest.raises(RuntimeError, match="pytest_flops_tests::doubled_matmul already"):
        register_flop_formula("pytest_flops_tests::doubled_matmul")(lambda *s, out_shape: 2)

    register_flop_formula(doubled_matmul_op, override=True)(lambda a, b, *, out_shape: 3)
    measured = measure(lambda: doubled_matmul(torch.randn(4, 5), torch.randn(5, 6)))
    assert measured.by_op == {"pytest_flops_tests.doubled_matmul": 3}


def test_a_scoped_formula_is_gone_when_its_block_exits(
    doubled_matmul_op: torch._ops.OpOverloadPacket,
) -> None:
    def call() -> Measurement:
        return measure(lambda: doubled_matmul(torch.randn(4, 5), torch.randn(5, 6)))

    with scoped_flop_formula(doubled_matmul_op, lambda a, b, *, out_shape: 7):
        assert call().by_op == {"pytest_flops_tests.doubled_matmul": 7}
    assert call().unsupported == {"pytest_flops_tests.doubled_matmul": 1}
    assert doubled_matmul_op not in FLOP_FORMULAS

    # a built-in, overridden in the block only, also when the block raises
    refused = scoped_flop_formula(torch.ops.aten.mm, lambda *shapes, out_shape: 1)
    with pytest.raises(RuntimeError, match="aten::mm already has a formula"), refused:
        pass
    with (
        pytest.raises(KeyError),
        scoped_flop_formula(torch.ops.aten.mm, lambda *shapes, out_shape: 1, override=True),
    ):
        assert mm_count().by_op == {"aten.mm": 1}
        raise KeyError("the block fails")
    assert mm_count().by_op == {"aten.mm": 240}  # 2*4*5*6: the built-in is back


def test_upsample_backward_kernels_and_tensor_checks_cost_nothing() -> None:
    def step() -> None:
        for mode, shape in [
            ("linear", (1, 2, 8)),  # upsample_linear1d_backward: SAM's vision encoder
            ("bicubic", (1, 2, 8, 8)),  # upsample_bicubic2d_backward: ViTDet, YOLOS
            ("nearest", (1, 2, 8)),
            ("nearest-exact", (1, 2, 4, 4, 4)),
            ("trilinear", (1, 2, 4, 4, 4)),
        ]:
            x = torch.randn(shape, requires_grad=True)
            nn.functional.interpolate(x, scale_factor=2, mode=mode).sum().backward()
        # torch._check_tensor_all runs aten._is_all_true (VITS)
        torch._check_tensor_all(torch.ones(3, dtype=torch.bool))

    assert (measure(step).total, measure(step).unsupported) == (0, {})


def test_every_upsample_kernel_and_its_backward_is_known() -> None:
    names = {
        name.split("::")[1].split(".")[0]
        for name in torch._C._dispatch_get_all_op_names()
        if name.startswith("aten::") and "upsample" in name
    }
    assert "upsample_bicubic2d_backward" in names  # the list is torch's, not a copy
    unknown = [
        f"aten.{name}.{overload}"
        for name in sorted(names)
        for overload in getattr(torch.ops.aten, name).overloads()
        if not is_uncounted(getattr(getattr(torch.ops.aten, name), overload))
    ]
    assert unknown == []


def test_get_unsupported_ops_is_a_copy(doubled_matmul_op: torch._ops.OpOverloadPacket) -> None:
    with FlopCounterMode(display=False) as mode:
        doubled_matmul(torch.randn(4, 5), torch.randn(5, 6))
    unsupported = mode.get_unsupported_ops()
    assert unsupported == {"pytest_flops_tests.doubled_matmul": 1}
    unsupported.clear()
    assert mode.get_unsupported_ops() == {"pytest_flops_tests.doubled_matmul": 1}
