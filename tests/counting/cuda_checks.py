"""Check that CUDA kernels count what the CPU counts for the same calls.

Run it on a machine with a GPU::

    python tests/counting/cuda_checks.py

``tests/counting/test_cuda.py`` runs each check as a test, skipped without CUDA.

It runs every SDPA backend (flash, memory-efficient, cuDNN, math) on the
attention cases of the test suite, jagged-tensor SDPA, FlexAttention forward and
backward, cuDNN LSTM/GRU/RNN, the transformer inference fast paths,
``_scaled_mm``, ``_grouped_mm``, varlen attention (per sequence), ``torch.cond``
and ``scan``, linear algebra and FFTs, two small models' training steps and the
module rows of work CUDA's backward thread does (checkpoint recomputation, a
gradient penalty), and compares each count with the formula and with the same
call counted on CPU. A backend that cannot run a case (flash with an attention mask, say) is
reported as skipped. It prints one
line per check and exits 1 if any count differs, 0 otherwise; with no GPU there
is nothing to check and it exits 0.

``--device cpu`` runs the same checks on the CPU's kernels (flash and math
attention, oneDNN LSTM), which tests the script itself where no GPU is at hand.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # examples/, run from anywhere

from examples.models import LSTMLanguageModel, TinyGPT
from pytest_flops import FlopCounterMode, Measurement
from pytest_flops.counting.formulas.attention import sdpa_backward_flop_count, sdpa_flop_count
from pytest_flops.portable import ATTENTION

Shape = tuple[int, ...]

FUSED_SDPA_OPS = {
    SDPBackend.FLASH_ATTENTION: {
        "cuda": "aten._scaled_dot_product_flash_attention",
        "cpu": "aten._scaled_dot_product_flash_attention_for_cpu",
    },
    SDPBackend.EFFICIENT_ATTENTION: {"cuda": "aten._scaled_dot_product_efficient_attention"},
    SDPBackend.CUDNN_ATTENTION: {"cuda": "aten._scaled_dot_product_cudnn_attention"},
}


@dataclass
class Report:
    failures: int = 0
    lines: list[str] = field(default_factory=list)

    def check(self, name: str, got: object, expected: object) -> None:
        if got == expected:
            self._line("ok", f"{name}: {got}")
        else:
            self.failures += 1
            self._line("FAIL", f"{name}: got {got}, expected {expected}")

    def skip(self, name: str, why: str) -> None:
        self._line("skip", f"{name}: {why}")

    def _line(self, status: str, text: str) -> None:
        line = f"{status:>4}  {text}"
        self.lines.append(line)
        print(line, flush=True)


def measure(step: Callable[[], Any]) -> Measurement:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with FlopCounterMode(display=False) as mode:
            step()
    return mode.to_measurement()


def phases(measured: Measurement) -> tuple[int, int]:
    return measured.forward, measured.backward


# -- scaled dot-product attention ---------------------------------------------------


def attention_dtype(device: str) -> torch.dtype:
    return torch.float16 if device == "cuda" else torch.float32


@dataclass(frozen=True)
class AttentionCase:
    name: str
    q_shape: Shape
    kv_shape: Shape
    v_dim: int
    sdpa_kwargs: dict[str, Any] = field(default_factory=dict)
    mask: bool = False

    def step(self, device: str, dtype: torch.dtype) -> Callable[[], None]:
        def run() -> None:
            options: dict[str, Any] = {"device": device, "dtype": dtype, "requires_grad": True}
            q = torch.randn(self.q_shape, **options)
            k = torch.randn(self.kv_shape, **options)
            v = torch.randn((*self.kv_shape[:-1], self.v_dim), **options)
            kwargs = dict(self.sdpa_kwargs)
            if self.mask:
                kwargs["attn_mask"] = torch.ones(
                    self.q_shape[-2], self.kv_shape[-2], dtype=torch.bool, device=device
                )
            F.scaled_dot_product_attention(q, k, v, **kwargs).sum().backward()

        return run

    def fused_counts(self) -> tuple[int, int]:
        shapes = (self.q_shape, self.kv_shape, (*self.kv_shape[:-1], self.v_dim))
        grad_out = (*self.q_shape[:-1], self.v_dim)
        return sdpa_flop_count(*shapes), sdpa_backward_flop_count(grad_out, *shapes)


ATTENTION_CASES = [
    AttentionCase("q, k, v [2, 8, 256, 64]", (2, 8, 256, 64), (2, 8, 256, 64), 64),
    AttentionCase("GQA", (2, 8, 128, 64), (2, 2, 96, 64), 64, {"enable_gqa": True}),
    AttentionCase("MQA", (2, 8, 128, 64), (2, 1, 96, 64), 64, {"enable_gqa": True}),
    AttentionCase("S_q != S_k", (2, 4, 128, 64), (2, 4, 192, 64), 64),
    AttentionCase("attn_mask", (2, 4, 128, 64), (2, 4, 192, 64), 64, mask=True),
    AttentionCase("is_causal", (2, 4, 128, 64), (2, 4, 128, 64), 64, {"is_causal": True}),
    AttentionCase("D_v != D_q", (2, 4, 128, 64), (2, 4, 192, 64), 32),
]


def check_attention(report: Report, device: str) -> None:
    dtype = attention_dtype(device)
    issue_case = ATTENTION_CASES[0]
    report.check("formula, [2, 8, 256, 64]", issue_case.fused_counts(), (268_435_456, 671_088_640))
    for case in ATTENTION_CASES:
        forward, fused_backward = case.fused_counts()
        on_cpu = phases(measure(case.step("cpu", torch.float32)))
        # the CPU has no fused kernel for D_v != D_q and runs the math path there
        cpu_backward = 2 * forward if case.v_dim != case.q_shape[-1] else fused_backward
        report.check(f"SDPA {case.name}, CPU", on_cpu, (forward, cpu_backward))
        for backend in [*FUSED_SDPA_OPS, SDPBackend.MATH]:
            name = f"SDPA {case.name}, {device} {backend.name}"
            try:
                with sdpa_kernel(backend):
                    measured = measure(case.step(device, dtype))
            except RuntimeError as error:  # "No available kernel", unsupported dtype...
                report.skip(name, str(error).splitlines()[0][:100])
                continue
            if backend is SDPBackend.MATH:  # bmm by bmm, no recompute: 2x forward
                report.check(name, phases(measured), (forward, 2 * forward))
                continue
            report.check(name, phases(measured), (forward, fused_backward))
            if FUSED_SDPA_OPS[backend].get(device) is not None:
                # each backend's kernel is stored under the one portable name
                report.check(f"{name} ran", measured.by_op.get(ATTENTION), forward)


def check_jagged_attention(report: Report, device: str) -> None:
    dtype = attention_dtype(device)
    lengths, heads, head_dim = (3, 5), 2, 16
    tokens = torch.nested.nested_tensor(
        [torch.randn(length, heads * head_dim) for length in lengths],
        layout=torch.jagged,
        device=device,
        dtype=dtype,
        requires_grad=True,
    )

    def step() -> None:
        q = tokens.unflatten(-1, (heads, head_dim)).transpose(1, 2)
        F.scaled_dot_product_attention(q, q, q).values().sum().backward()

    per_sequence = [(1, heads, length, head_dim) for length in lengths]
    forward = sum(sdpa_flop_count(shape, shape, shape) for shape in per_sequence)
    fused_backward = sum(
        sdpa_backward_flop_count(shape, shape, shape, shape) for shape in per_sequence
    )
    measured = measure(step)
    math_ran = "aten.matmul" in measured.by_op  # the CPU's jagged path
    backward = 2 * forward if math_ran else fused_backward
    report.check(
        f"jagged SDPA, summed per sequence, {device}", phases(measured), (forward, backward)
    )


def check_flex_attention(report: Report, device: str) -> None:
    if device != "cuda":
        report.skip("FlexAttention backward", "runs on CUDA only")
        return
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    def causal(batch: Any, head: Any, q_idx: Any, kv_idx: Any) -> Any:
        return q_idx >= kv_idx

    q = torch.randn(1, 4, 256, 64, device=device, requires_grad=True)
    kv = torch.randn(1, 2, 256, 64, device=device, requires_grad=True)
    shapes = (q.shape, kv.shape, kv.shape)
    expected = {
        "higher_order.flex_attention": sdpa_flop_count(*shapes),
        "higher_order.flex_attention_backward": sdpa_backward_flop_count(q.shape, *shapes),
    }
    block_mask = create_block_mask(causal, 1, 1, 256, 256, device=device)

    def step(**kwargs: Any) -> None:
        flex_attention(q, kv, kv, enable_gqa=True, **kwargs).sum().backward()

    for name, kwargs in [("no mask", {}), ("causal block mask", {"block_mask": block_mask})]:
        measured = measure(partial(step, **kwargs))
        report.check(f"FlexAttention GQA, {name}, counted dense", measured.by_op, expected)


# -- recurrent layers, transformer fast paths, scaled mm, models --------------------------


def rnn_training_step(rnn: nn.RNNBase, device: str) -> Callable[[], None]:
    """Input and initial state need grad: fused kernels (oneDNN, cuDNN) compute their
    gradients regardless, the CPU's step-by-step GRU and RNN only when needed."""
    states = rnn.num_layers * (2 if rnn.bidirectional else 1)
    x = torch.randn(4, 10, rnn.input_size, device=device, requires_grad=True)
    h0 = torch.randn(states, 4, rnn.hidden_size, device=device, requires_grad=True)
    hidden = (h0, torch.randn_like(h0, requires_grad=True)) if isinstance(rnn, nn.LSTM) else h0
    return lambda: rnn(x, hidden)[0].sum().backward()


def check_rnns(report: Report, device: str) -> None:
    for rnn_type in (nn.LSTM, nn.GRU, nn.RNN):
        for name, kwargs in [
            ("2 layers, bidirectional, batch_first", {"num_layers": 2, "bidirectional": True}),
            ("1 layer", {}),
        ]:
            counts = {}
            for where in ("cpu", device):
                rnn = rnn_type(32, 64, batch_first=True, **kwargs).to(where)
                counts[where] = phases(measure(rnn_training_step(rnn, where)))
            report.check(
                f"{rnn_type.__name__} {name}, {device} vs CPU", counts[device], counts["cpu"]
            )
    lstm = nn.LSTM(32, 64, proj_size=16).to(device)
    measured = measure(lambda: lstm(torch.randn(10, 4, 32, device=device))[0].sum().backward())
    # 40 tokens * 2 * (W_ih 256*32 + W_hh 256*16 + W_hr 16*64) = 1,064,960
    forward = 2 * 40 * (256 * 32 + 256 * 16 + 16 * 64)
    report.check(f"LSTM proj_size forward, {device}", measured.forward, forward)
    if device == "cuda":  # cuDNN: input and weight gradients; the CPU decomposes
        report.check("LSTM proj_size backward, cuDNN", measured.backward, 2 * forward)


def check_transformer_fast_paths(report: Report, device: str) -> None:
    layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).to(device).eval()
    attention = nn.MultiheadAttention(64, 4, batch_first=True).to(device).eval()
    x = torch.randn(2, 16, 64, device=device)
    padding = torch.zeros(2, 16, dtype=torch.bool, device=device)
    padding[1, 12:] = True
    calls: dict[str, Callable[[], object]] = {
        "TransformerEncoder": lambda: encoder(x),
        "TransformerEncoder, padding mask": lambda: encoder(x, src_key_padding_mask=padding),
        "MultiheadAttention": lambda: attention(x, x, x),
        "MultiheadAttention, padding mask": lambda: attention(x, x, x, key_padding_mask=padding),
    }
    for name, call in calls.items():
        with torch.no_grad():
            fast = measure(call)
        slow = measure(call)
        report.check(f"{name} eval + no_grad vs grad, {device}", fast.total, slow.total)


def check_scaled_mm(report: Report, device: str) -> None:
    if device != "cuda" or torch.cuda.get_device_capability() < (8, 9):
        report.skip("_scaled_mm", "needs a GPU with float8 (compute capability 8.9+)")
        return
    a = torch.randn(64, 32, device=device).to(torch.float8_e4m3fn)
    b = torch.randn(16, 32, device=device).to(torch.float8_e4m3fn).t()
    one = torch.tensor(1.0, device=device)
    measured = measure(lambda: torch._scaled_mm(a, b, one, one, out_dtype=torch.bfloat16))
    report.check("_scaled_mm", measured.by_op, {"aten._scaled_mm": 2 * 64 * 32 * 16})


def grouped_mm_step(device: str) -> tuple[int, int, Mapping[str, int]]:
    """10 of 16 token rows routed to 3 experts (64 -> 32), forward and backward."""
    torch.manual_seed(0)
    tokens = torch.randn(16, 64, device=device, dtype=torch.bfloat16, requires_grad=True)
    experts = torch.randn(3, 32, 64, device=device, dtype=torch.bfloat16).transpose(-2, -1)
    experts.requires_grad_()
    offs = torch.tensor([3, 7, 10], device=device, dtype=torch.int32)
    grad = torch.randn(16, 32, device=device, dtype=torch.bfloat16)
    measured = measure(lambda: torch._grouped_mm(tokens, experts, offs=offs).backward(grad))
    return (*phases(measured), measured.unsupported)


def check_grouped_mm(report: Report, device: str) -> None:
    if not hasattr(torch, "_grouped_mm"):
        report.skip("_grouped_mm", "this torch has none")
        return
    if device == "cuda" and torch.cuda.get_device_capability() < (8, 0):
        report.skip("_grouped_mm", "needs compute capability 8.0+")
        return
    counts = {where: grouped_mm_step(where) for where in ("cpu", device)}
    forward = 2 * 10 * 64 * 32
    report.check("_grouped_mm, formula", counts[device], (forward, 2 * forward, {}))
    report.check(f"_grouped_mm, {device} vs CPU", counts[device], counts["cpu"])


def check_models(report: Report, device: str) -> None:
    for name, make_model in [("TinyGPT", TinyGPT), ("LSTMLanguageModel", LSTMLanguageModel)]:
        counts = {}
        for where in ("cpu", device):
            torch.manual_seed(0)
            model = make_model().to(where)
            tokens = torch.randint(0, 64, (2, 16), device=where)
            measured = measure(partial(train_step, model, tokens))
            # by_op too: a snapshot recorded on CPU passes on CUDA (portable kernel names)
            counts[where] = (*phases(measured), measured.unsupported, measured.by_op)
        report.check(f"{name} train step, {device} vs CPU", counts[device], counts["cpu"])


class CheckpointedMLP(nn.Module):
    def __init__(self, *, use_reentrant: bool) -> None:
        super().__init__()
        self.use_reentrant = use_reentrant
        self.block = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 32))
        self.head = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = checkpoint(self.block, x, use_reentrant=self.use_reentrant)
        return self.head(hidden)


def module_rows(measured: Measurement) -> dict[str, tuple[int, int]]:
    return {path: (row.forward, row.backward) for path, row in measured.modules.items()}


def train_step(model: nn.Module, x: torch.Tensor) -> None:
    model(x).sum().backward()


def gradient_penalty(model: nn.Module, x: torch.Tensor) -> None:
    (grad_x,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    grad_x.pow(2).sum().backward()


def check_backward_attribution(report: Report, device: str) -> None:
    """Work that CUDA's backward thread does (recomputation, double backward) keeps its rows."""
    cases = [
        ("checkpointed train step, reentrant", True, train_step),
        ("checkpointed train step, non-reentrant", False, train_step),
        # reentrant checkpointing refuses autograd.grad
        ("gradient penalty, non-reentrant checkpoint", False, gradient_penalty),
    ]
    for name, use_reentrant, step in cases:
        rows = {}
        for where in ("cpu", device):
            torch.manual_seed(0)
            model = CheckpointedMLP(use_reentrant=use_reentrant).to(where)
            x = torch.randn(8, 32, device=where, requires_grad=True)
            rows[where] = module_rows(measure(partial(step, model, x)))
        report.check(f"{name}: module rows, {device} vs CPU", rows[device], rows["cpu"])


def check_varlen_attention(report: Report, device: str) -> None:
    if device != "cuda":
        report.skip("varlen_attn", "a CUDA kernel only")
        return
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        report.skip("varlen_attn", "this torch has none")
        return
    # lengths 128 and 64, 8 heads of 64: 4*8*64*(128² + 64²) forward, 2.5 times that backward
    options: dict[str, Any] = {"device": device, "dtype": torch.bfloat16, "requires_grad": True}
    q, k, v = (torch.randn(192, 8, 64, **options) for _ in range(3))
    lengths = torch.tensor([0, 128, 192], device=device, dtype=torch.int32)

    def step() -> None:
        out = varlen_attn(q, k, v, lengths, lengths, 128, 128)
        assert isinstance(out, torch.Tensor)  # no auxiliary outputs asked for
        out.sum().backward()

    try:
        measured = measure(step)
    except RuntimeError as error:  # no flash kernel for this GPU
        report.skip("varlen_attn", str(error).splitlines()[0][:100])
        return
    report.check("varlen_attn, per sequence", phases(measured), (41_943_040, 104_857_600))
    report.check("varlen_attn, nothing unsupported", measured.unsupported, {})


def check_higher_order(report: Report, device: str) -> None:
    def step(where: str) -> Measurement:
        x, a = torch.randn(4, 8, device=where), torch.randn(8, 8, device=where)
        xs = torch.randn(5, 4, 8, device=where)
        from torch._higher_order_ops.scan import scan

        def combine(carry: torch.Tensor, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            following = carry @ a + x_t
            return following, following.clone()

        def run() -> None:
            torch.cond(x.sum() > 0, lambda y: y @ a, lambda y: (y @ a) @ a, (x.abs(),))
            scan(combine, x, xs)

        return measure(run)

    counts = {where: step(where).by_op for where in ("cpu", device)}
    report.check(f"cond and scan, {device} vs CPU", counts[device], counts["cpu"])


def check_linear_algebra_and_ffts(report: Report, device: str) -> None:
    def step(where: str) -> Measurement:
        a = torch.randn(6, 6, device=where)
        spd = a @ a.T + 6 * torch.eye(6, device=where)
        b = torch.randn(6, 2, device=where)

        def run() -> None:
            torch.linalg.solve(a, b)
            torch.linalg.cholesky(spd)
            torch.linalg.qr(a)
            torch.linalg.svd(a)
            torch.linalg.eigh(spd)
            torch.fft.rfft(torch.randn(4, 16, device=where))
            torch.fft.fft2(torch.randn(2, 8, 8, device=where))

        return measure(run)

    counted = {where: step(where) for where in ("cpu", device)}
    report.check(f"linalg and FFTs, {device} vs CPU", counted[device].by_op, counted["cpu"].by_op)
    report.check(f"linalg and FFTs, {device}: nothing unsupported", counted[device].unsupported, {})


CHECKS: tuple[Callable[[Report, str], None], ...] = (
    check_attention,
    check_jagged_attention,
    check_flex_attention,
    check_rnns,
    check_transformer_fast_paths,
    check_scaled_mm,
    check_grouped_mm,
    check_varlen_attention,
    check_higher_order,
    check_linear_algebra_and_ffts,
    check_models,
    check_backward_attribution,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    device = parser.parse_args(argv).device
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    report = Report()
    for check in CHECKS:
        check(report, device)
    print(f"{report.failures} mismatch(es)" if report.failures else "all counts match")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
