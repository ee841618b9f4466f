"""Llama 7B and 70B count exactly to the analytic formula, on meta tensors."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from examples.llama import LLAMA_7B, LLAMA_70B, Llama, LlamaConfig
from pytest_flops import FlopCounterMode, Measurement

SEQ_LEN = 2048
FLASH = "fused.scaled_dot_product_attention"  # the CPU's flash kernel
FLASH_BACKWARD = "fused.scaled_dot_product_attention_backward"


def analytic_flops(config: LlamaConfig, batch: int, seq_len: int) -> dict[str, int]:
    """FLOPs of one forward and backward of ``Llama(config)``, derived by hand.

    With T = batch * seq_len tokens, a bias-free linear from ``n_in`` to ``n_out``
    features is one mm of (T, n_in) @ (n_in, n_out): 2*T*n_in*n_out forward, and
    twice that backward (grad of its input and grad of its weight; every linear's
    input needs grad since the embedding weight does).

    Per layer, the linears are q and o (d -> d), k and v (d -> n_kv_heads * head_dim),
    gate, up (d -> ffn) and down (ffn -> d). The output head is d -> vocab.

    Attention per layer is the fused CPU kernel (meta tensors take it too):
    forward QK^T and PV, 2*B*H*S*S*head_dim each, so 4*B*S*S*d (H * head_dim = d);
    its backward recomputes QK^T and takes four more products of that size:
    5/2 of the forward. The causal mask does not halve the count (torch's
    convention). Grouped KV heads change nothing: every query head still
    multiplies a full key and value. RMSNorm, rotary, SiLU, the residual adds,
    the embedding and the loss are elementwise or gathers: 0.
    """
    tokens = batch * seq_len
    d, kv_dim = config.d_model, config.n_kv_heads * config.head_dim
    linear_weights = 2 * d * d + 2 * d * kv_dim + 3 * d * config.ffn_dim  # in * out, summed
    linears_forward = 2 * tokens * (config.n_layers * linear_weights + d * config.vocab_size)
    attention_forward = config.n_layers * 4 * batch * seq_len * seq_len * d
    return {
        "aten.mm": 3 * linears_forward,
        FLASH: attention_forward,
        FLASH_BACKWARD: attention_forward * 5 // 2,
        "forward": linears_forward + attention_forward,
        "backward": 2 * linears_forward + attention_forward * 5 // 2,
    }


def count_train_step(config: LlamaConfig, batch: int, seq_len: int) -> Measurement:
    with torch.device("meta"):
        model = Llama(config)
    tokens = torch.zeros(batch, seq_len, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter:
        logits = model(tokens)
        F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    return counter.to_measurement()


def test_analytic_formula_of_7b_by_hand() -> None:
    # The formula itself, worked for 7B: T = 2048, d = 4096, ffn = 11008,
    # vocab = 32000, 32 layers, all heads full (kv_dim = d).
    # linears forward = 2*T*(32*(4*d*d + 3*d*ffn) + d*vocab) = 27,062,588,932,096
    # attention forward = 32*4*T*T*d = 2,199,023,255,552
    assert analytic_flops(LLAMA_7B, batch=1, seq_len=SEQ_LEN) == {
        "aten.mm": 81_187_766_796_288,  # 3 * linears forward
        FLASH: 2_199_023_255_552,
        FLASH_BACKWARD: 5_497_558_138_880,  # 5/2 * attention forward
        "forward": 29_261_612_187_648,
        "backward": 59_622_736_003_072,
    }


@pytest.fixture(scope="module")
def llama_7b() -> Measurement:
    return count_train_step(LLAMA_7B, batch=1, seq_len=SEQ_LEN)


def test_llama_7b_train_step_counts_to_the_formula(llama_7b: Measurement) -> None:
    expected = analytic_flops(LLAMA_7B, batch=1, seq_len=SEQ_LEN)
    assert llama_7b.by_op == {op: expected[op] for op in ("aten.mm", FLASH, FLASH_BACKWARD)}
    assert (llama_7b.forward, llama_7b.backward) == (
        expected["forward"],
        expected["backward"],
    )
    assert llama_7b.unsupported == {}


def test_llama_7b_layers_count_alike(llama_7b: Measurement) -> None:
    per_layer = analytic_flops(replace(LLAMA_7B, n_layers=1, vocab_size=0), 1, SEQ_LEN)
    for layer in range(LLAMA_7B.n_layers):
        row = llama_7b.modules[f"Llama.layers.{layer}"]
        assert (row.forward, row.backward) == (per_layer["forward"], per_layer["backward"])
    head = llama_7b.modules["Llama.lm_head"]
    # 2*T*d*vocab = 2*2048*4096*32000 forward, twice that backward
    assert (head.forward, head.backward) == (536_870_912_000, 1_073_741_824_000)


def test_llama_70b_grouped_query_train_step_counts_to_the_formula() -> None:
    measurement = count_train_step(LLAMA_70B, batch=1, seq_len=SEQ_LEN)
    expected = analytic_flops(LLAMA_70B, batch=1, seq_len=SEQ_LEN)
    assert (measurement.forward, measurement.backward) == (
        expected["forward"],
        expected["backward"],
    )
    assert measurement.by_op == {op: expected[op] for op in ("aten.mm", FLASH, FLASH_BACKWARD)}


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_llama_7b_sharded_tp2_fsdp4_counts_one_rank_s_share(llama_7b: Measurement) -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    from examples.llama import shard
    from pytest_flops import Traffic, fake_world

    with fake_world(8, mesh_shape=(4, 2), mesh_dim_names=("dp", "tp")) as mesh:
        fake = FakeTensorMode(allow_non_fake_inputs=True)
        with fake:
            model = Llama(LLAMA_7B)
        shard(model, mesh)
        tokens = fake.from_tensor(torch.zeros(1, SEQ_LEN, dtype=torch.long))
        with fake, FlopCounterMode(display=False) as counter:
            F.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
    sharded = counter.to_measurement()
    # Tensor parallel over 2: every layer's projections and attention heads halve; the
    # replicated output head counts in full. Against the unsharded count, module by module:
    for layer in range(LLAMA_7B.n_layers):
        path = f"Llama.layers.{layer}"
        assert sharded.modules[path].total * 2 == llama_7b.modules[path].total
    assert sharded.modules["Llama.lm_head"].total == llama_7b.modules["Llama.lm_head"].total
    assert sharded.total == 45_247_480_463_360  # 32 * 2,727,304,232,960 / 2 + 1,610,612,736,000
    assert sharded.unsupported == {}
    # One rank's communication, with batch 1 x 2048 of d = 4096 fp32 activations (33,554,432
    # bytes): per layer, 2 forward all-reduces (o and down projections) and 5 backward ones
    # (the inputs of q, k, v, gate, up): 7 x 32 = 224. FSDP2 over 4 gathers a layer's tp-local
    # weights (4*d*d/2 + 3*d*ffn/2 + 2*d = 101,195,776 fp32: 404,783,104 bytes) for its forward
    # and again for its backward, and reduce-scatters their gradients once; the root's embedding,
    # head and norm (2*32000*4096 + 4096 = 262,148,096 fp32: 1,048,592,384 bytes) once each.
    assert sharded.communication == {
        "_c10d_functional.all_reduce": Traffic(calls=224, bytes=224 * 33_554_432),
        "c10d._allgather_base_": Traffic(calls=65, bytes=64 * 404_783_104 + 1_048_592_384),
        "c10d._reduce_scatter_base_": Traffic(calls=33, bytes=32 * 404_783_104 + 1_048_592_384),
    }
