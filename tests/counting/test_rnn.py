"""Recurrent layers: oneDNN (CPU LSTM) and cuDNN kernels, against explicit cell loops.

A step multiplies the input by W_ih (G·H, I) and the hidden state by W_hh
(G·H, H), G = 4 gates for LSTM, 3 for GRU, 1 for RNN: forward FLOPs are
``2 · tokens · (numel(W_ih) + numel(W_hh))`` per layer and direction, tokens
being time steps x batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import pytest_flops
from pytest_flops import FlopCounterMode, Measurement
from pytest_flops.counting.formulas.rnn import cudnn_rnn_backward_flop, cudnn_rnn_flop

aten = torch.ops.aten


def measure(step: Callable[[], Any]) -> Measurement:
    with FlopCounterMode(display=False) as mode:
        step()
    return mode.to_measurement()


def test_lstm_counts_what_an_lstm_cell_loop_counts() -> None:
    lstm, cell = nn.LSTM(128, 256), nn.LSTMCell(128, 256)
    x = torch.randn(4, 32, 128, requires_grad=True)  # (T, B, I)
    h0 = torch.randn(1, 32, 256, requires_grad=True)
    c0 = torch.randn(1, 32, 256, requires_grad=True)

    def cell_loop() -> None:
        h, c = h0[0], c0[0]
        outputs = []
        for step in x:
            h, c = cell(step, (h, c))
            outputs.append(h)
        torch.stack(outputs).sum().backward()

    fused = measure(lambda: lstm(x, (h0, c0))[0].sum().backward())
    loop = measure(cell_loop)

    # 2 * (4*32 tokens) * (1024*128 + 1024*256) = 100,663,296; backward: the
    # gradients of inputs, states and weights, each as costly as the forward
    assert fused.by_op == {
        "fused.rnn": 100_663_296,  # aten.mkldnn_rnn_layer on a CPU
        "fused.rnn_backward": 201_326_592,
    }
    assert (loop.forward, loop.backward) == (fused.forward, fused.backward)


@pytest.mark.parametrize(
    ("rnn_type", "cell_type", "forward"),
    [
        # 2 * 128 tokens * (768*128 + 768*256)
        (nn.GRU, nn.GRUCell, 75_497_472),
        # 2 * 128 tokens * (256*128 + 256*256)
        (nn.RNN, nn.RNNCell, 25_165_824),
    ],
)
def test_gru_and_rnn_count_what_their_cell_loops_count(
    rnn_type: Callable[[int, int], nn.RNNBase],
    cell_type: Callable[[int, int], nn.RNNCellBase],
    forward: int,
) -> None:
    rnn, cell = rnn_type(128, 256), cell_type(128, 256)
    x = torch.randn(4, 32, 128, requires_grad=True)
    h0 = torch.randn(1, 32, 256, requires_grad=True)

    def cell_loop() -> None:
        h = h0[0]
        outputs = []
        for step in x:
            h = cell(step, h)
            outputs.append(h)
        torch.stack(outputs).sum().backward()

    fused = measure(lambda: rnn(x, h0)[0].sum().backward())
    loop = measure(cell_loop)

    assert fused.forward == loop.forward == forward
    assert fused.backward == loop.backward == 2 * forward


def test_fused_lstm_backward_counts_the_input_gradient_even_when_unneeded() -> None:
    lstm = nn.LSTM(8, 16)
    x = torch.randn(5, 3, 8)  # needs no grad, nor does the zero initial state

    measured = measure(lambda: lstm(x)[0].sum().backward())

    # 2 * 15 tokens * (64*8 + 64*16) = 46,080; the oneDNN backward computes the
    # input and initial-state gradients anyway: still 2x the forward
    assert (measured.forward, measured.backward) == (46_080, 92_160)


def multi_layer_bidirectional_lstm() -> None:
    lstm = nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
    lstm(torch.randn(3, 5, 8))[0].sum().backward()


def test_multi_layer_bidirectional_batch_first_lstm() -> None:
    measured = measure(multi_layer_bidirectional_lstm)

    # 15 tokens; per direction, layer 0: 64*8 + 64*16 = 1,536 weights, layer 1
    # (input 2*16): 64*32 + 64*16 = 3,072. 2 * 15 * 2 * (1,536 + 3,072) = 276,480
    assert measured.by_op == {
        "fused.rnn": 276_480,
        "fused.rnn_backward": 552_960,
    }


@pytest.mark.parametrize("device", ["meta", "fake"])
def test_lstm_on_meta_and_fake_tensors_counts_like_cpu(device: str) -> None:
    expected = measure(multi_layer_bidirectional_lstm).to_dict()

    if device == "meta":
        with torch.device("meta"):
            measured = measure(multi_layer_bidirectional_lstm)
    else:
        with FakeTensorMode():
            measured = measure(multi_layer_bidirectional_lstm)

    # Bytes too: torch's meta kernel of the oneDNN LSTM backward returns one tensor for
    # both bias gradients, where the CPU returns two; while counting, meta and fake
    # tensors get two (else 4 layer directions of 64 fp32, 4 * 256 bytes, were written
    # once less, and autograd copied the shared one before accumulating it, 4 * 2 * 256
    # bytes more). The workspace, oneDNN's choice, counts on neither.
    assert measured == Measurement.from_dict(expected, where="cpu")


def gru_forward(gru: nn.Module, x: torch.Tensor) -> None:
    gru(x)


@pytest.mark.parametrize("device", ["meta", "fake"])
def test_gru_on_meta_projects_all_time_steps_at_once_like_cpu(
    device: Literal["meta", "fake"],
) -> None:
    torch.manual_seed(0)
    gru, x = nn.GRU(16, 32), torch.randn(5, 3, 16)  # T=5, B=3: 15 tokens, 3 gates of 32

    measured = pytest_flops.count(gru_forward, gru, x, device=device)

    # FLOPs 2 * 15 * (96*16 + 96*32) = 138,240. ATen's CPU layer projects the inputs
    # of all 5 steps in one addmm: bias 96*4 + x 15*16*4 + W_ih 16*96*4 + out 15*96*4
    # = 384 + 960 + 6,144 + 5,760 = 13,248 bytes; then one per step for the hidden
    # state: 5 * (384 + 3*32*4 + 32*96*4 + 3*96*4) = 5 * 14,208 = 71,040. (Meta
    # tensors took the input's addmm per step too: 5 * 7,872 = 39,360 bytes.)
    assert measured.by_op == {"aten.addmm": 138_240}
    assert measured.bytes_by_op["aten.addmm"] == 13_248 + 71_040
    assert measured == measure(lambda: gru_forward(gru, x))


RNN_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "gru": lambda: nn.GRU(6, 8, num_layers=2, bidirectional=True, batch_first=True),
    "rnn_tanh": lambda: nn.RNN(6, 8, num_layers=2, bidirectional=True, batch_first=True),
    "rnn_relu": lambda: nn.RNN(6, 8, 2, nonlinearity="relu", bidirectional=True, bias=False),
    # oneDNN has no projections: ATen's step-by-step LSTM
    "lstm_proj": lambda: nn.LSTM(6, 8, num_layers=2, bidirectional=True, proj_size=4),
}


def rnn_train_step(rnn: nn.Module, x: torch.Tensor) -> None:
    output, hidden = rnn(x)
    h_n = hidden[0] if isinstance(hidden, tuple) else hidden
    (output.sum() + h_n.sum()).backward()


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("layer", RNN_LAYERS)
@pytest.mark.parametrize("device", ["meta", "fake"])
def test_step_by_step_rnns_on_meta_and_fake_count_like_cpu(
    layer: str, device: Literal["meta", "fake"]
) -> None:
    torch.manual_seed(0)
    rnn, x = RNN_LAYERS[layer](), torch.randn(3, 5, 6)

    on_cpu = measure(lambda: rnn_train_step(rnn, x))

    assert on_cpu.total > 0
    assert pytest_flops.count(rnn_train_step, rnn, x, device=device) == on_cpu


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
@pytest.mark.parametrize("device", ["meta", "fake"])
def test_lstm_without_onednn_on_meta_and_fake_counts_like_cpu(
    device: Literal["meta", "fake"],
) -> None:
    torch.manual_seed(0)
    lstm, x = nn.LSTM(6, 8, num_layers=2, bidirectional=True), torch.randn(3, 5, 6)

    with torch.backends.mkldnn.flags(enabled=False):
        on_cpu = measure(lambda: rnn_train_step(lstm, x))
        measured = pytest_flops.count(rnn_train_step, lstm, x, device=device)

    assert "fused.rnn" not in on_cpu.by_op  # ATen's cells, step by step
    assert measured == on_cpu


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_lstm_with_projections_runs_step_by_step_on_cpu() -> None:
    lstm = nn.LSTM(8, 16, proj_size=4)  # oneDNN has no projections: ATen decomposes

    measured = measure(lambda: lstm(torch.randn(5, 3, 8))[0].sum().backward())

    # 15 tokens * 2 * (W_ih 64*8 + W_hh 64*4 + W_hr 4*16 = 832) = 24,960 forward.
    # Backward asks only for what autograd needs: the weight gradients (24,960),
    # dh through W_hh for steps 2..5 (4 * 2*3*4*64 = 6,144) and through W_hr for
    # every step (5 * 2*3*16*4 = 1,920); no input or initial-state gradient.
    assert (measured.forward, measured.backward) == (24_960, 33_024)


def test_gru_multi_layer_bidirectional() -> None:
    gru = nn.GRU(8, 16, num_layers=2, bidirectional=True, batch_first=True)

    measured = measure(lambda: gru(torch.randn(3, 5, 8)))

    # per direction, layer 0: 48*8 + 48*16 = 1,152, layer 1: 48*32 + 48*16 = 2,304;
    # 2 * 15 tokens * 2 * (1,152 + 2,304) = 207,360
    assert measured.forward == 207_360


def test_packed_sequences_count_real_tokens_only() -> None:
    lstm = nn.LSTM(8, 16)
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(5, 3, 8), [5, 3, 2])

    measured = measure(lambda: lstm(packed))

    # 5 + 3 + 2 = 10 tokens: 2 * 10 * (64*8 + 64*16) = 30,720
    assert measured.forward == 30_720


# -- cuDNN ------------------------------------------------------------------------

# LSTM, 2 layers, bidirectional, hidden 16 with proj_size 4, input 8; per direction
# layer 0: W_ih 64*8 + W_hh 64*4 + W_hr 4*16 = 832; layer 1 (input 2*4):
# 64*8 + 64*4 + 4*16 = 832. All weights: 4 * 832 = 3,328.
CUDNN_WEIGHTS = [
    shape
    for input_size in (8, 8, 8, 8)  # layer 0 forward/reverse, layer 1 forward/reverse
    for shape in [(64, input_size), (64, 4), (64,), (64,), (4, 16)]
]


def meta(*shape: int) -> torch.Tensor:
    return torch.empty(shape, device="meta")


def test_cudnn_rnn_through_its_meta_kernel() -> None:
    weights = [meta(*shape) for shape in CUDNN_WEIGHTS]
    h0, c0 = meta(4, 3, 4), meta(4, 3, 16)
    lstm_mode = 2

    with FlopCounterMode(display=False) as mode:
        aten._cudnn_rnn(
            meta(5, 3, 8), weights, 5, None, h0, c0, lstm_mode, 16, 4, 2, False, 0.0, True, True,
            [], None,
        )  # fmt: skip
        # packed: batch sizes 3, 3, 2, 1, 1 make 10 tokens
        aten._cudnn_rnn(
            meta(10, 8), weights, 5, None, h0, c0, lstm_mode, 16, 4, 2, False, 0.0, True, True,
            [3, 3, 2, 1, 1], None,
        )  # fmt: skip

    # 2 * 15 tokens * 3,328 = 99,840, then 2 * 10 * 3,328 = 66,560
    assert mode.get_total_flops() == 99_840 + 66_560


@pytest.mark.parametrize(("weights_wanted", "backward"), [(True, 199_680), (False, 99_840)])
def test_cudnn_rnn_backward_formula(weights_wanted: bool, backward: int) -> None:
    # no meta kernel; the formula on the op's shapes. Input and hidden-state
    # gradients always (one forward's worth), weight gradients when wanted.
    x_shape = (5, 3, 8)
    output_mask = [True, True, True, weights_wanted]
    assert cudnn_rnn_flop(x_shape, CUDNN_WEIGHTS) == 99_840
    assert cudnn_rnn_backward_flop(x_shape, CUDNN_WEIGHTS, 5, None, output_mask) == backward


@pytest.mark.skipif(not torch.cuda.is_available(), reason="cuDNN needs CUDA")
def test_cudnn_lstm_counts_like_cpu() -> None:
    with torch.device("cuda"):
        on_cuda = measure(multi_layer_bidirectional_lstm)

    assert (on_cuda.forward, on_cuda.backward) == (276_480, 552_960)
    assert on_cuda.by_op == {"aten._cudnn_rnn": 276_480, "aten._cudnn_rnn_backward": 552_960}
