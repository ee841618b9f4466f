"""Recurrent layers on meta tensors, run as a CPU runs them.

``nn.LSTM`` on a CPU runs oneDNN's layers (``mkldnn_rnn_layer``), whose backward
computes every gradient, where meta tensors step through ``addmm`` and skip the
gradients nobody asked for. ``nn.GRU``, ``nn.RNN`` and an LSTM oneDNN does not
take (projections, oneDNN off, float64) run ATen's step-by-step layers, which
project all time steps' inputs in one ``addmm`` on a CPU but one per step on
meta: equal FLOPs, more bytes (``W_ih`` read again each step). The routes here
run the CPU's sequence of ops on meta tensors;
:mod:`pytest_flops.counting.meta_as_cpu` sends the calls to them while counting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["ONE_HIDDEN_RNN_CELLS", "cpu_lstm_route", "cpu_one_hidden_rnn_route", "plain_meta"]

aten = torch.ops.aten

_ONEDNN_LSTM_MODE = 2  # ideep::rnn_kind::LSTM, as ATen passes it to mkldnn_rnn_layer


def plain_meta(*tensors: torch.Tensor) -> bool:
    """Plain meta tensors (or parameters): not fake, nested or other subclasses."""
    return all(type(t) in (torch.Tensor, torch.nn.Parameter) and t.is_meta for t in tensors)


def _cpu_lstm_on_meta(
    input: torch.Tensor,
    hx: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    has_biases: bool,
    num_layers: int,
    dropout: float,
    train: bool,
    bidirectional: bool,
    batch_first: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """ATen's ``mkldnn_rnn`` (one ``mkldnn_rnn_layer`` per layer and direction), or None
    where a CPU would not take it: oneDNN off, not float32, empty, or with projections."""
    h0, c0 = hx
    if not (
        plain_meta(input, h0, c0, *params)
        and torch.backends.mkldnn.enabled
        and input.dtype == torch.float32
        and input.numel() > 0
        and h0.shape[-1] == c0.shape[-1]
    ):
        return None
    directions = 2 if bidirectional else 1
    weights_per_layer = 4 if has_biases else 2
    options = (num_layers, has_biases, bidirectional, batch_first, train)
    layer_input = (input.transpose(0, 1) if batch_first else input).contiguous()
    h0, c0 = h0.contiguous(), c0.contiguous()
    h_n: list[torch.Tensor] = []
    c_n: list[torch.Tensor] = []
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            weights = params[index * weights_per_layer : (index + 1) * weights_per_layer]
            output, h, c = _onednn_lstm_layer(
                layer_input, weights, h0[index], c0[index], reverse=direction > 0, options=options
            )
            outputs.append(output)
            h_n.append(h)
            c_n.append(c)
        layer_input = outputs[0] if directions == 1 else torch.cat(outputs, -1)
        if dropout and train and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, dropout, training=True)
    output = layer_input.transpose(0, 1) if batch_first else layer_input
    return output, torch.stack(h_n), torch.stack(c_n)


def _onednn_lstm_layer(
    layer_input: torch.Tensor,
    weights: Sequence[torch.Tensor],
    h0: torch.Tensor,
    c0: torch.Tensor,
    *,
    reverse: bool,
    options: tuple[int, bool, bool, bool, bool],  # num_layers ... train, as lstm takes them
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer in one direction, as ATen's CPU LSTM runs it (``mkldnn_rnn_layer``)."""
    w_ih, w_hh, *biases = weights
    b_ih, b_hh = biases or (torch.zeros_like(w_ih), torch.zeros_like(w_hh))
    output, h, c, _workspace = aten.mkldnn_rnn_layer(
        layer_input,
        w_ih,
        w_hh,
        b_ih,
        b_hh,
        h0,
        c0,
        reverse,
        [],
        _ONEDNN_LSTM_MODE,
        h0.shape[-1],
        *options,
    )
    return output, h, c


@dataclasses.dataclass(frozen=True, kw_only=True)
class _CellWeights:
    """One layer and direction's weights, as ATen's ``gather_params`` reads them."""

    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b_ih: torch.Tensor | None
    b_hh: torch.Tensor | None
    w_hr: torch.Tensor | None  # LSTM's projection

    @classmethod
    def of(cls, weights: Sequence[torch.Tensor]) -> _CellWeights:
        """From ``(w_ih, w_hh[, b_ih, b_hh][, w_hr])``: biases after the weights, the
        projection last."""
        w_ih, w_hh, *rest = weights
        b_ih, b_hh = rest[:2] if len(rest) >= 2 else (None, None)
        w_hr = rest[-1] if len(rest) in (1, 3) else None
        return cls(w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, w_hr=w_hr)


# One step of a cell, as ATen's CPU cells take it: the input's projection done already
# (``pre_compute_input``), the hidden state's done here; a hidden state, or LSTM's (h, c).
Cell = Callable[[torch.Tensor, Any, _CellWeights], Any]


def _simple_cell(nonlinearity: Callable[[torch.Tensor], torch.Tensor]) -> Cell:
    def cell(input_w: torch.Tensor, hidden: torch.Tensor, weights: _CellWeights) -> torch.Tensor:
        return nonlinearity(F.linear(hidden, weights.w_hh, weights.b_hh).add_(input_w))

    return cell


def _gru_cell(input_w: torch.Tensor, hidden: torch.Tensor, weights: _CellWeights) -> torch.Tensor:
    i_reset, i_input, i_new = input_w.unsafe_chunk(3, 1)
    h_reset, h_input, h_new = F.linear(hidden, weights.w_hh, weights.b_hh).unsafe_chunk(3, 1)
    reset_gate = h_reset.add_(i_reset).sigmoid_()
    input_gate = h_input.add_(i_input).sigmoid_()
    new_gate = i_new.add(h_new.mul_(reset_gate)).tanh_()
    return (hidden - new_gate).mul_(input_gate).add_(new_gate)


def _lstm_cell(
    input_w: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor], weights: _CellWeights
) -> tuple[torch.Tensor, torch.Tensor]:
    hx, cx = hidden
    gates = F.linear(hx, weights.w_hh, weights.b_hh).add_(input_w).unsafe_chunk(4, 1)
    in_gate, forget_gate = gates[0].sigmoid_(), gates[1].sigmoid_()
    cell_gate, out_gate = gates[2].tanh_(), gates[3].sigmoid_()
    cy = (forget_gate * cx).add_(in_gate * cell_gate)
    hy = out_gate * cy.tanh()
    return (hy if weights.w_hr is None else torch.matmul(hy, weights.w_hr.t())), cy


def _cpu_rnn_layers(
    cell: Cell,
    input: torch.Tensor,
    hiddens: Sequence[Any],
    params: Sequence[torch.Tensor],
    options: tuple[bool, int, float, bool, bool, bool],  # has_biases ... batch_first, as ATen's
) -> tuple[torch.Tensor, list[Any]]:
    """ATen's ``_rnn_impl`` over ``FullLayer`` as a CPU input runs it: each layer and
    direction projects all time steps' inputs in one ``linear``, then steps through
    them (meta inputs take one ``linear`` per step). The output and the final hidden
    states, in ``hiddens``' order."""
    _has_biases, num_layers, dropout, train, bidirectional, batch_first = options
    directions = 2 if bidirectional else 1
    per_direction = len(params) // (num_layers * directions)
    layer_input = input.transpose(0, 1) if batch_first else input
    final: list[Any] = []
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            weights = _CellWeights.of(params[index * per_direction : (index + 1) * per_direction])
            steps = F.linear(layer_input, weights.w_ih, weights.b_ih).unbind(0)
            torch._check(bool(steps), lambda: "Expected sequence length to be larger than 0 in RNN")
            hidden = hiddens[index]
            step_outputs = []
            for step in reversed(steps) if direction else steps:
                hidden = cell(step, hidden, weights)
                step_outputs.append(hidden[0] if isinstance(hidden, tuple) else hidden)
            outputs.append(torch.stack(step_outputs[::-1] if direction else step_outputs, 0))
            final.append(hidden)
        layer_input = outputs[0] if directions == 1 else torch.cat(outputs, outputs[0].dim() - 1)
        if dropout and train and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, dropout, training=True)
    return (layer_input.transpose_(0, 1) if batch_first else layer_input), final


def cpu_one_hidden_rnn_route(cell: Cell) -> Callable[..., Any]:
    """The meta route of ``gru.input``, ``rnn_tanh.input`` or ``rnn_relu.input``."""

    def route(
        input: torch.Tensor,
        hx: torch.Tensor,
        params: Sequence[torch.Tensor],
        *options: Any,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not plain_meta(input, hx, *params):
            return None
        output, final = _cpu_rnn_layers(cell, input, hx.unbind(0), params, options)
        return output, torch.stack(final, 0)

    return route


def _cpu_lstm_steps_on_meta(
    input: torch.Tensor,
    hx: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    *options: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The CPU LSTM where oneDNN does not take it (switched off, projections, another
    dtype), as ATen's ``_lstm_impl`` runs it; else None."""
    h0, c0 = hx
    if not plain_meta(input, h0, c0, *params):
        return None
    hiddens = list(zip(h0.unbind(0), c0.unbind(0), strict=True))
    output, final = _cpu_rnn_layers(_lstm_cell, input, hiddens, params, options)
    return output, torch.stack([h for h, _ in final], 0), torch.stack([c for _, c in final], 0)


def cpu_lstm_route(*args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """oneDNN's LSTM where the CPU takes it, else ATen's step by step one."""
    onednn = _cpu_lstm_on_meta(*args)
    return onednn if onednn is not None else _cpu_lstm_steps_on_meta(*args)


ONE_HIDDEN_RNN_CELLS: dict[str, Cell] = {
    "gru": _gru_cell,
    "rnn_tanh": _simple_cell(torch.tanh),
    "rnn_relu": _simple_cell(torch.relu),
}
"""The cells of the recurrent ops with one hidden state, by the op's name."""
