"""Transformer inference fast paths (eval + no_grad) count what the grad path counts.

Layer: d_model 32, 4 heads of 8, feed-forward 64, batch 2 x 6 tokens = 12 tokens.
Linear weights: qkv 96*32 + out 32*32 + ffn 64*32 + 32*64 = 8,192, so
2 * 12 * 8,192 = 196,608; attention 2*2*4*6*6*(8+8) = 9,216. One layer: 205,824.
MultiheadAttention alone: q, k, v and out projections 2*12*4*32*32 = 98,304,
plus the same 9,216 of attention: 107,520.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from pytest_flops import FlopCounterMode, Measurement

pytestmark = pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype")

LAYER_FLOPS = 205_824
MHA_FLOPS = 107_520
TRANSFORMER_LAYER_FWD = "aten._transformer_encoder_layer_fwd"
NATIVE_MHA = "aten._native_multi_head_attention"

# the second sequence is padding after 4 tokens; the first fills all 6
PADDING = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])


def encoder_layer() -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(32, 4, 64, batch_first=True).eval()


def encoder() -> nn.TransformerEncoder:
    return nn.TransformerEncoder(encoder_layer(), 2, enable_nested_tensor=True).eval()


def attention() -> nn.MultiheadAttention:
    return nn.MultiheadAttention(32, 4, batch_first=True).eval()


X = torch.randn(2, 6, 32)

# (module, call, fast-path op, FLOPs)
CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module], object], str, int]] = {
    "layer": (encoder_layer, lambda m: m(X), TRANSFORMER_LAYER_FWD, LAYER_FLOPS),
    "layer_padding_mask": (
        encoder_layer,
        lambda m: m(X, src_key_padding_mask=PADDING),
        TRANSFORMER_LAYER_FWD,
        LAYER_FLOPS,
    ),
    "encoder": (encoder, lambda m: m(X), TRANSFORMER_LAYER_FWD, 2 * LAYER_FLOPS),
    # the encoder turns the padded batch into a nested tensor for its layers
    "encoder_padding_mask": (
        encoder,
        lambda m: m(X, src_key_padding_mask=PADDING),
        TRANSFORMER_LAYER_FWD,
        2 * LAYER_FLOPS,
    ),
    "mha": (attention, lambda m: m(X, X, X), NATIVE_MHA, MHA_FLOPS),
    "mha_no_weights": (attention, lambda m: m(X, X, X, need_weights=False), NATIVE_MHA, MHA_FLOPS),
    "mha_padding_mask": (
        attention,
        lambda m: m(X, X, X, key_padding_mask=PADDING),
        NATIVE_MHA,
        MHA_FLOPS,
    ),
}


def measure(run: Callable[[], object], *, grad: bool) -> Measurement:
    with torch.set_grad_enabled(grad), FlopCounterMode(display=False) as mode:
        run()
    return mode.to_measurement()


@pytest.mark.parametrize("case", CASES)
def test_fast_path_counts_what_the_grad_path_counts(case: str) -> None:
    make_module, call, fast_path_op, flops = CASES[case]
    module = make_module()

    fast = measure(lambda: call(module), grad=False)
    slow = measure(lambda: call(module), grad=True)

    assert fast.by_op == {fast_path_op: flops}
    assert fast_path_op not in slow.by_op
    assert fast.total == slow.total == flops
    assert fast.unsupported == slow.unsupported == {}


def test_nested_input_counts_as_padded_to_its_longest_sequence() -> None:
    # Every sequence ends in padding here, so the nested batch the encoder builds
    # is 4 tokens long: padded work over 2 x 4 tokens, not the 2 x 6 given.
    padding = torch.tensor([[False] * 4 + [True] * 2, [False] * 3 + [True] * 3])

    measured = measure(lambda: encoder()(X, src_key_padding_mask=padding), grad=False)

    # per layer 2 * 8 tokens * 8,192 + 2*2*4*4*4*(8+8) = 131,072 + 4,096 = 135,168
    assert measured.by_op == {TRANSFORMER_LAYER_FWD: 2 * 135_168}
