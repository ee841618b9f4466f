"""Llama 7B and 70B, counted on the meta device: no weights, no memory, no compute.

A model too big for CI still gets a FLOP regression test: built under
``torch.device("meta")``, it runs every op's shape logic and none of its
arithmetic, and counts what the same model counts on a CPU.
"""

import torch
import torch.nn.functional as F

from examples.llama import LLAMA_7B, LLAMA_70B, Llama
from pytest_flops import Flops


def test_llama_7b_train_step_on_meta(flops: Flops) -> None:
    with torch.device("meta"):
        model = Llama(LLAMA_7B)
        tokens = torch.zeros(1, 2048, dtype=torch.long)
    with flops(model):
        logits = model(tokens)
        F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()


def test_llama_70b_forward_on_meta(flops: Flops) -> None:
    with torch.device("meta"):
        model = Llama(LLAMA_70B)
        tokens = torch.zeros(1, 2048, dtype=torch.long)
    with torch.no_grad(), flops(model):
        model(tokens)
