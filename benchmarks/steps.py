"""The models, steps and counters every benchmark section shares."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.flop_counter
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # examples/, when run as a script

from examples.llama import Llama, LlamaConfig  # noqa: E402
from examples.models import TinyGPT  # noqa: E402
from pytest_flops import FlopCounterMode  # noqa: E402
from pytest_flops.counting.meta_as_cpu import cpu_kernels_on_meta  # noqa: E402

SEQ_LEN = 2048


def ours() -> FlopCounterMode:
    return FlopCounterMode(display=False)


def torchs() -> torch.utils.flop_counter.FlopCounterMode:
    return torch.utils.flop_counter.FlopCounterMode(display=False)


class NoOp(TorchDispatchMode):
    """The floor of any dispatch-mode counter: every op through Python, nothing counted."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # as ours: no torch._dynamo import on the first op

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return func(*args, **(kwargs or {}))


class NoOpOnCpuKernels(NoOp):
    """The floor on the kernels our counter sends meta attention to (see meta_as_cpu)."""

    def __enter__(self) -> NoOpOnCpuKernels:
        self._routing = cpu_kernels_on_meta()
        self._routing.__enter__()
        return super().__enter__()  # type: ignore[no-untyped-call]

    def __exit__(self, *exc_info: Any) -> None:
        super().__exit__(*exc_info)  # type: ignore[no-untyped-call]
        self._routing.__exit__(None, None, None)


def counted(mode: Any, step: Any) -> int:
    with mode() as counter:
        step()
    return counter.get_total_flops()


def llama_train_step(model: Llama, tokens: torch.Tensor) -> None:
    """Forward, cross-entropy and backward of a Llama on ``tokens``."""
    logits = model(tokens)
    F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    model.zero_grad(set_to_none=True)


def meta_llama(config: LlamaConfig) -> tuple[Llama, torch.Tensor]:
    with torch.device("meta"):
        return Llama(config), torch.zeros(1, SEQ_LEN, dtype=torch.long)


def train_step(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> Any:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad()
        out = model(inputs)
        F.cross_entropy(out.flatten(0, -2), targets.flatten()).backward()
        optimizer.step()

    return step


def resnet18_batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    return resnet18(), torch.randn(8, 3, 224, 224), torch.randint(0, 1000, (8,))


def gpt_batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = TinyGPT(vocab_size=8192, dim=256, num_heads=4, num_layers=4, max_seq_len=256)
    tokens = torch.randint(0, 8192, (8, 256))
    return model, tokens, tokens
