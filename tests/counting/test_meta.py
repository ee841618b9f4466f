"""Counting without running: meta and fake models, and ``pytest_flops.count``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

import pytest_flops
from examples.llama import Llama, LlamaConfig
from pytest_flops import FlopCounterMode, Measurement

LLAMA_SOURCE = Path(__file__).parents[2] / "examples" / "llama.py"

# Grouped-query attention and a tied head: the parts of Llama most likely to
# count differently off the CPU.
SMALL_LLAMA = LlamaConfig(
    n_layers=2,
    d_model=64,
    n_heads=4,
    n_kv_heads=2,
    ffn_dim=96,
    vocab_size=100,
    max_seq_len=32,
    tie_embeddings=True,
)


def train_step(model: nn.Module, tokens: torch.Tensor) -> None:
    logits = model(tokens)
    F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()


def small_llama() -> tuple[Llama, torch.Tensor]:
    torch.manual_seed(0)
    return Llama(SMALL_LLAMA), torch.randint(0, SMALL_LLAMA.vocab_size, (2, 16))


def count_on_cpu(model: nn.Module, tokens: torch.Tensor) -> Measurement:
    with FlopCounterMode(display=False) as counter:
        train_step(model, tokens)
    return counter.to_measurement()


@pytest.fixture(scope="module")
def cpu_counts() -> Measurement:
    return count_on_cpu(*small_llama())


def test_small_llama_counts_attention_and_linears(cpu_counts: Measurement) -> None:
    # Guards the equalities below against comparing two empty counts.
    # T = 2*16 = 32 tokens, d = 64, kv_dim = 2*16 = 32, ffn = 96, vocab = 100:
    # linears forward 2*T*(2*(2*d*d + 2*d*kv_dim + 3*d*ffn) + d*vocab) = 4,341,760,
    # attention forward 2 layers * 4*B*S*S*d = 2*4*2*16*16*64 = 262,144.
    assert cpu_counts.by_op == {
        "aten.mm": 3 * 4_341_760,
        "fused.scaled_dot_product_attention": 262_144,  # the CPU's flash kernel
        "fused.scaled_dot_product_attention_backward": 262_144 * 5 // 2,
    }


def test_model_built_under_fake_tensor_mode_counts_like_cpu(cpu_counts: Measurement) -> None:
    with FakeTensorMode():
        model, tokens = small_llama()
        assert isinstance(tokens, FakeTensor)
        with FlopCounterMode(display=False) as counter:
            train_step(model, tokens)
    assert counter.to_measurement() == cpu_counts


def test_model_built_on_meta_counts_like_cpu(cpu_counts: Measurement) -> None:
    with torch.device("meta"):
        model, tokens = small_llama()
    assert tokens.is_meta
    with FlopCounterMode(display=False) as counter:
        train_step(model, tokens)
    assert counter.to_measurement() == cpu_counts


# -- pytest_flops.count ------------------------------------------------------------


@pytest.mark.parametrize("device", ["meta", "fake"])
def test_count_of_a_train_step_equals_running_it(
    device: Literal["meta", "fake"], cpu_counts: Measurement
) -> None:
    model, tokens = small_llama()
    assert pytest_flops.count(train_step, model, tokens, device=device) == cpu_counts


def test_count_of_a_module_is_its_forward() -> None:
    model = nn.Linear(5, 6)
    measurement = pytest_flops.count(model, torch.randn(4, 5))
    # addmm of (4, 5) @ (5, 6): 2*4*5*6 = 240; the bias add costs nothing
    assert measurement.by_op == {"aten.addmm": 240}
    assert (measurement.forward, measurement.backward) == (240, 0)
    assert measurement.by_module == {"Linear": {"aten.addmm": 240}}


def test_count_leaves_the_real_model_untouched_and_unrun() -> None:
    model, tokens = small_llama()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    seen: list[tuple[str, bool]] = []
    model.register_forward_pre_hook(
        lambda module, args: seen.append((module.embed.weight.device.type, args[0] is tokens))
    )

    pytest_flops.count(train_step, model, tokens)

    # the hook came along with the copy and ran there only; the ids it got are a copy
    assert seen == [("meta", False)]
    for name, param in model.named_parameters():
        assert param.device.type == "cpu"
        assert param.grad is None, name
        assert torch.equal(param, before[name]), name


def test_count_keeps_tied_weights_tied() -> None:
    model, tokens = small_llama()
    tied: list[bool] = []

    def step(model: Llama, tokens: torch.Tensor) -> None:
        tied.append(model.lm_head.weight is model.embed.weight and model.embed.weight.is_meta)
        train_step(model, tokens)

    pytest_flops.count(step, model, tokens)
    assert tied == [True]


@pytest.mark.parametrize(("device", "seen"), [("meta", "meta"), ("fake", "cpu")])
def test_count_replaces_keyword_tensors_and_fake_keeps_the_device(
    device: Literal["meta", "fake"], seen: str
) -> None:
    devices: list[tuple[str, bool]] = []

    def matmul(*, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        devices.append((a.device.type, isinstance(a, FakeTensor)))
        return a @ b

    measurement = pytest_flops.count(matmul, a=torch.ones(3, 4), b=torch.ones(4, 2), device=device)
    assert measurement.total == 2 * 3 * 4 * 2  # mm of (3, 4) @ (4, 2)
    assert devices == [(seen, device == "fake")]


class Scorer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(5, 6, bias=False)
        self.seen: list[str] = []

    def score(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.proj.weight.device.type)
        return self.proj(x).sum()


def test_count_of_a_bound_method_replaces_its_module() -> None:
    scorer = Scorer()
    measurement = pytest_flops.count(scorer.score, torch.randn(4, 5))
    assert measurement.total == 2 * 4 * 5 * 6  # mm of (4, 5) @ (5, 6)
    assert scorer.seen == []  # the copy recorded "meta" on its own list
    assert scorer.proj.weight.device.type == "cpu"


def test_count_of_a_partial_replaces_its_bound_arguments(cpu_counts: Measurement) -> None:
    model, tokens = small_llama()
    step = functools.partial(train_step, model)
    assert pytest_flops.count(step, tokens) == cpu_counts
    assert all(param.grad is None for param in model.parameters())


def test_count_rejects_an_unknown_device() -> None:
    with pytest.raises(ValueError, match='device must be "meta" or "fake", got \'cpu\''):
        pytest_flops.count(nn.Linear(2, 2), torch.ones(1, 2), device="cpu")  # type: ignore[arg-type]


# -- through the flops fixture --------------------------------------------------------

FIXTURE_TEST = """
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

import pytest_flops
from llama import Llama, LlamaConfig

CONFIG = LlamaConfig(
    n_layers=1, d_model=32, n_heads=4, n_kv_heads=2, ffn_dim=48, vocab_size=50, max_seq_len=16
)


def build():
    torch.manual_seed(0)
    return Llama(CONFIG), torch.randint(0, CONFIG.vocab_size, (1, 8))


def train_step(model, tokens):
    logits = model(tokens)
    F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()


def test_meta_fake_and_dry_run_count_like_cpu(flops):
    model, tokens = build()
    with flops(model, name="cpu"):
        train_step(model, tokens)
    with torch.device("meta"):
        meta_model, meta_tokens = build()
    with flops(meta_model, name="meta"):
        train_step(meta_model, meta_tokens)
    with FakeTensorMode():
        fake_model, fake_tokens = build()
    with flops(fake_model, name="fake"):
        train_step(fake_model, fake_tokens)
    # count() runs a stand-in copy of the model: its own counter names the rows
    dry_run = pytest_flops.count(train_step, model, tokens)
    assert flops["cpu"].total > 0
    assert flops["meta"] == flops["fake"] == dry_run == flops["cpu"]
"""


def test_meta_and_fake_models_count_through_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(llama=LLAMA_SOURCE.read_text(), test_dry=FIXTURE_TEST)
    # Written by the first run, matched by the second: meta counts are stable snapshots.
    # In-process, since a subprocess would pay torch's import and meta warm-up
    # again; without hypothesis, whose terminal summary imports for seconds.
    pytester.runpytest("-p", "no:hypothesispytest", "--flops-update").assert_outcomes(passed=1)
    pytester.runpytest("-p", "no:hypothesispytest").assert_outcomes(passed=1)
