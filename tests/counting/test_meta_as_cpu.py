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


def test_the_fast_paths_are_the_cpus_own_outside_counting() -> None:
    assert torch.utils.backend_registration._privateuse1_backend_name == "privateuseone"
