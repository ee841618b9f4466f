"""Meta stand-ins take the paths a CPU takes: transformer inference fast paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import pytest_flops
from pytest_flops import FlopCounterMode, Measurement


def on_cpu(fn: Callable[..., Any], *args: Any) -> Measurement:
    with FlopCounterMode(display=False) as mode:
        fn(*args)
    return mode.to_measurement()


def inference(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x)


def self_attention(attention: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out, _ = attention(x, x, x, need_weights=False)
        return out


@pytest.mark.parametrize("device", ["meta", "fake"])
def test_an_encoder_layer_in_inference_takes_the_fused_kernel(device: str) -> None:
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True).eval()
    x = torch.randn(2, 10, 16)
    measured = pytest_flops.count(inference, layer, x, device=device)  # type: ignore[arg-type]
    assert measured == on_cpu(inference, layer, x)
    # 20 tokens: QKV 2*20*16*48 = 30,720; scores and their use of V 2 * 2*2*4*10*10*4 =
    # 12,800; output projection 2*20*16*16 = 10,240; feed-forward 2 * 2*20*16*32 = 40,960
    assert measured.by_op == {"aten._transformer_encoder_layer_fwd": 94_720}
    # one fused call reads x (2*10*16*4 = 1,280), the weights and biases (48*16 + 48 +
    # 16*16 + 16 + 4*16 + 32*16 + 32 + 16*32 + 16 = 2,224 floats: 8,896) and writes 1,280
    assert measured.bytes_accessed == 1_280 + 8_896 + 1_280
    assert sorted(measured.modules) == ["Global", "TransformerEncoderLayer"]


@pytest.mark.parametrize("device", ["meta", "fake"])
def test_self_attention_in_inference_takes_the_fused_kernel(device: str) -> None:
    attention = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(2, 10, 16)
    measured = pytest_flops.count(self_attention, attention, x, device=device)  # type: ignore[arg-type]
    assert measured == on_cpu(self_attention, attention, x)
    # QKV 30,720 + scores and their use of V 12,800 + output projection 10,240
    assert measured.by_op == {"aten._native_multi_head_attention": 53_760}
    # x once (q, k and v are one tensor): 1,280; weights and biases 48*16 + 48 + 16*16 +
    # 16 = 1,088 floats: 4,352; the output 1,280
    assert measured.bytes_accessed == 1_280 + 4_352 + 1_280


def test_a_layer_built_on_meta_takes_the_fused_kernel() -> None:
    with torch.device("meta"):
        layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True).eval()
        x = torch.randn(2, 10, 16)
    measured = on_cpu(inference, layer, x)
    assert measured.by_op == {"aten._transformer_encoder_layer_fwd": 94_720}  # as above
    assert measured.bytes_accessed == 11_456


def test_the_fast_paths_take_meta_tensors_only_while_counting() -> None:
    backends = torch.utils.backend_registration
    attention = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with FlopCounterMode(display=False):
        assert backends._privateuse1_backend_name == "meta"
    assert backends._privateuse1_backend_name == "privateuseone"

    def fails(attention: nn.MultiheadAttention, x: torch.Tensor) -> None:
        self_attention(attention, x)
        raise ValueError("the step fails")

    with pytest.raises(ValueError, match="the step fails"):  # a failing count restores it too
        pytest_flops.count(fails, attention, torch.randn(2, 10, 16))
    assert backends._privateuse1_backend_name == "privateuseone"


def bf16_step(model: nn.Module, x: torch.Tensor) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().sum().backward()


def test_autocast_on_meta_stand_ins_is_refused_and_fake_ones_count_it() -> None:
    model, x = nn.Linear(8, 4), torch.randn(2, 8)
    with pytest.raises(RuntimeError, match=r"aten.linear.default on meta tensors under "):
        pytest_flops.count(bf16_step, model, x)
    fake = pytest_flops.count(bf16_step, model, x, device="fake")
    assert fake == on_cpu(bf16_step, model, x)
    # in bf16 as on the CPU: the forward 2*2*8*4 = 128, the weight's gradient 128 (x
    # needs none)
    flops_by_precision = fake.modules["Global"].flops_by_precision
    assert flops_by_precision == {"aten.addmm": {"bf16": 128}, "aten.mm": {"bf16": 128}}
    # the casts, read fp32 (4 B) and write bf16 (2 B) or back: x 16*6 = 96, the weight
    # 32*6 = 192, the bias 4*6 = 24; out.float() 8*6 = 48; in backward the gradient of
    # that (a ones scalar expanded: reads 4, writes 8*2) 20, the weight's gradient 192
    # and the bias's 24
    assert fake.bytes_by_op["aten._to_copy"] == 96 + 192 + 24 + 48 + 20 + 192 + 24


def test_autocast_on_a_model_built_on_meta_is_refused() -> None:
    with torch.device("meta"):
        model, x = nn.Linear(8, 4), torch.randn(2, 8)
    with pytest.raises(RuntimeError, match=r"torch.autocast\('cpu'\)"):
        on_cpu(bf16_step, model, x)
    # without autocast, or outside a count, meta tensors run as before
    assert on_cpu(lambda: model(x)).total == 128
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.float32


def spectrogram(audio: torch.Tensor) -> torch.Tensor:
    return torch.stft(audio, 64, window=torch.hann_window(64), return_complex=True).abs()


@pytest.mark.parametrize("device", ["meta", "fake"])
def test_stft_takes_a_window_made_in_the_call(device: str) -> None:
    audio = torch.randn(1, 1600)
    measured = pytest_flops.count(spectrogram, audio, device=device)  # type: ignore[arg-type]
    assert measured == on_cpu(spectrogram, audio)
    # centred: 1600 + 2*32 samples, hop 64/4 = 16: 1 + (1664 - 64) // 16 = 101 frames,
    # each a real transform of 64 points, 2.5 * 64 * log2(64) = 960
    assert measured.total == 101 * 960


def padded_inference(
    encoder: nn.TransformerEncoder, x: torch.Tensor, padding: torch.Tensor
) -> torch.Tensor:
    with torch.no_grad():
        return encoder(x, src_key_padding_mask=padding)


def encoder_and_batch(*, nested: bool) -> tuple[nn.TransformerEncoder, torch.Tensor, torch.Tensor]:
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=nested).eval()
    padding = torch.zeros(2, 10, dtype=torch.bool)
    padding[1, 6:] = True
    return encoder, torch.randn(2, 10, 16), padding


@pytest.mark.parametrize("device", ["meta", "fake"])
@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_a_padded_batch_made_nested_is_refused_by_name(device: str) -> None:
    encoder, x, padding = encoder_and_batch(nested=True)
    with pytest.raises(RuntimeError, match=r"_nested_tensor_from_mask.*enable_nested_tensor=False"):
        pytest_flops.count(padded_inference, encoder, x, padding, device=device)  # type: ignore[arg-type]


@pytest.mark.parametrize("device", ["meta", "fake"])
def test_a_padded_batch_without_nested_tensors_counts_as_on_the_cpu(device: str) -> None:
    encoder, x, padding = encoder_and_batch(nested=False)
    measured = pytest_flops.count(padded_inference, encoder, x, padding, device=device)  # type: ignore[arg-type]
    assert measured == on_cpu(padded_inference, encoder, x, padding)
    assert measured.by_op == {"aten._transformer_encoder_layer_fwd": 2 * 94_720}  # as above
    # the float mask: zeros_like writes 2*10*4 = 80, masked_fill_ reads it and the bool
    # padding (20) and writes 80; each layer's fused call reads it too (80 more each)
    assert measured.bytes_by_op == {
        "aten.zeros_like": 80,
        "aten.masked_fill_": 180,
        "aten._transformer_encoder_layer_fwd": 2 * (11_456 + 80),
    }
