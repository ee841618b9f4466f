"""The same step counts the same, whatever the seed, thread count or device."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from examples.models import LSTMLanguageModel, TinyGPT
from pytest_flops import FlopCounterMode

ModelFactory = Callable[[], tuple[nn.Module, torch.Tensor]]


def tiny_gpt() -> tuple[nn.Module, torch.Tensor]:
    return TinyGPT(), torch.randint(0, 64, (2, 16))


def lstm_lm() -> tuple[nn.Module, torch.Tensor]:
    return LSTMLanguageModel(num_layers=2), torch.randint(0, 64, (2, 12))


def resnet18() -> tuple[nn.Module, torch.Tensor]:
    models = pytest.importorskip("torchvision.models")
    return models.resnet18(num_classes=10), torch.randn(1, 3, 64, 64)


FACTORIES: dict[str, ModelFactory] = {
    "tiny_gpt": tiny_gpt,
    "lstm_lm": lstm_lm,
    "resnet18": resnet18,
}


def train_step_counts(factory: ModelFactory) -> dict:
    model, inputs = factory()
    with FlopCounterMode(display=False) as mode:
        out = model(inputs)
        out.float().sum().backward()
    return mode.to_measurement().to_dict()


@contextmanager
def num_threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", FACTORIES)
def test_seeds_and_thread_counts_do_not_change_counts(name: str) -> None:
    runs = []
    for seed, threads in [(0, 1), (1, 2), (12345, 1)]:
        torch.manual_seed(seed)
        with num_threads(threads):
            runs.append(train_step_counts(FACTORIES[name]))
    assert runs[0]["total"] > 0
    assert runs[0] == runs[1] == runs[2]


@pytest.mark.parametrize("name", FACTORIES)
def test_meta_and_fake_tensors_count_like_cpu(name: str) -> None:
    cpu = train_step_counts(FACTORIES[name])

    with torch.device("meta"):
        meta = train_step_counts(FACTORIES[name])

    with FakeTensorMode():
        fake = train_step_counts(FACTORIES[name])

    assert cpu["total"] > 0
    assert meta == cpu
    assert fake == cpu
