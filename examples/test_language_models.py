"""Language models built from ``torch.nn`` (see ``examples/models.py``)."""

import torch

from examples.models import LSTMLanguageModel, TinyGPT
from pytest_flops import Flops


def test_tiny_gpt(flops: Flops) -> None:
    model = TinyGPT(vocab_size=64, dim=32, num_heads=2, num_layers=2, max_seq_len=32)
    tokens = torch.randint(0, 64, (2, 16))

    # A training step: forward and backward, stored as the "default" measurement.
    with flops(model):
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()

    # Inference, measured apart: the prompt once (prefill), then greedy decoding.
    # TinyGPT keeps no KV cache, so each decoding step runs the whole sequence again.
    model.zero_grad()
    with torch.no_grad():
        prompt = tokens[:, :8]
        with flops(model, name="prefill"):
            next_token = model(prompt)[:, -1].argmax(-1, keepdim=True)
        sequence = torch.cat([prompt, next_token], dim=1)
        with flops(model, name="decode"):
            for _ in range(4):
                next_token = model(sequence)[:, -1].argmax(-1, keepdim=True)
                sequence = torch.cat([sequence, next_token], dim=1)

    assert flops["prefill"].backward == flops["decode"].backward == 0
    assert flops["decode"].total > flops["prefill"].total


def test_lstm_language_model(flops: Flops) -> None:
    model = LSTMLanguageModel(vocab_size=64, embed_dim=32, hidden_size=32, num_layers=2)
    tokens = torch.randint(0, 64, (4, 12))
    with flops(model):
        logits = model(tokens)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    assert flops.backward > 0
