"""Bytes accessed: each op reads its distinct inputs once and writes its outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._runtime_estimation import get_num_bytes

import pytest_flops
from pytest_flops import FlopCounterMode, Measurement
from pytest_flops.counting.bytes_accessed import byte_rule, bytes_accessed

BF16 = torch.bfloat16


def measure(step: Callable[[], Any]) -> Measurement:
    with FlopCounterMode(display=False) as mode:
        step()
    return mode.to_measurement()


def test_bf16_matmul_reads_both_operands_and_writes_the_product() -> None:
    a, b = torch.randn(64, 128, dtype=BF16), torch.randn(128, 32, dtype=BF16)
    measured = measure(lambda: a @ b)
    # (64*128 + 128*32 + 64*32) * 2 bytes = (8,192 + 4,096 + 2,048) * 2
    assert measured.bytes_by_op == {"aten.mm": 28_672}
    assert measured.bytes_accessed == measured.modules["Global"].bytes_forward == 28_672


def test_bf16_linear_reads_its_bias_once_and_its_transposed_weight_for_free() -> None:
    linear = nn.Linear(128, 32).to(BF16)
    x = torch.randn(64, 128, dtype=BF16)
    measured = measure(lambda: linear(x))
    # addmm(bias, x, t(W)): 28,672 as the matmul plus the bias, 32 * 2 = 64; t is a view
    assert measured.bytes_by_op == {"aten.addmm": 28_736}
    assert measured.modules["Linear"].bytes_by_op == {"aten.addmm": 28_736}


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_contiguous_copy_of_a_transpose_reads_and_writes_it(device: str) -> None:
    x = torch.randn(256, 512, device=device)
    # read 256*512*4 = 524,288, write as much; the transpose itself is free
    assert measure(lambda: x.t().contiguous()).bytes_accessed == 1_048_576


def test_views_detach_and_allocations_move_nothing() -> None:
    x = torch.randn(64, 128)
    measured = measure(
        lambda: (
            x.view(128, 64),
            x.t(),
            x[1:],
            x.unsqueeze(0).expand(4, 64, 128),
            x.detach(),
            torch.empty(1024),
            torch.empty_like(x),
            # views too, though their schema does not say so (RNN kernels split this way)
            x.unsafe_split(32, 1),
            x.unsafe_split_with_sizes([100, 28], 1),
            x.unsafe_chunk(2, 0),
        )
    )
    assert measured.bytes_accessed == 0
    assert measured.bytes_by_op == {}


def test_a_factory_shaped_like_a_tensor_writes_its_output_and_reads_nothing() -> None:
    x = torch.randn(1000)
    measured = measure(
        lambda: (x.new_zeros(10), x.new_full((10,), 2.0), torch.ones_like(x), torch.randn_like(x))
    )
    # fp32: new_zeros and new_full write 10 values (40 B each), ones_like and randn_like
    # 1,000 (4,000 B each); none reads x's 4,000 bytes: they take its shape, dtype, device
    assert measured.bytes_by_op == {
        "aten.new_zeros": 40, "aten.new_full": 40, "aten.ones_like": 4_000,
        "aten.randn_like": 4_000,
    }  # fmt: skip


def test_a_broadcast_dimension_is_read_once() -> None:
    a, row = torch.randn(64, 128), torch.randn(128)
    measured = measure(lambda: a + row.expand(64, 128))
    # a 64*128*4 = 32,768, the expanded row (stride 0 along 64) 128*4 = 512, the sum 32,768
    assert measured.bytes_by_op == {"aten.add": 66_048}


def test_one_tensor_passed_twice_is_read_once() -> None:
    x = torch.randn(64, 128)
    # read 32,768 once, write 32,768
    assert measure(lambda: x * x).bytes_by_op == {"aten.mul": 65_536}


@pytest.mark.parametrize("layout", [torch.strided, torch.jagged])
def test_a_nested_tensor_moves_its_packed_values(layout: torch.layout) -> None:
    nested = torch.nested.nested_tensor([torch.ones(2, 3), torch.ones(4, 3)], layout=layout)
    # 2*3 + 4*3 = 18 fp32 values (72 B) read, and as many written; neither the offsets
    # nor the sizes of the pieces are data
    assert measure(lambda: nested * 2).bytes_accessed == 144
    # transposed, not contiguous: its values all the same (reading them crashed before)
    transposed = nested.transpose(1, 2)
    assert not transposed.is_contiguous()
    assert measure(lambda: transposed * 2).bytes_accessed == 144


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype")
def test_a_jagged_tensors_parts_are_handed_back_for_free() -> None:
    tokens = torch.nested.nested_tensor(
        [torch.ones(2, 3), torch.ones(4, 3)], layout=torch.jagged, requires_grad=True
    )
    step = measure(lambda: tokens.values().sum().backward())
    # values() and its backward's rebuilt jagged gradient read the offsets, lengths and
    # sequence lengths as they are stored (they counted the whole tensor each); the
    # sum reads 18 fp32 values and writes one: 76 B; its seed writes one (4 B); the
    # jagged gradient is cloned: its 18 packed values read and written, 144 B
    assert step.bytes_by_op == {"aten.sum": 76, "aten.ones_like": 4, "aten.clone": 144}


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")
@pytest.mark.parametrize("to_sparse", [torch.Tensor.to_sparse, torch.Tensor.to_sparse_csr])
def test_a_sparse_operand_moves_no_counted_bytes(to_sparse: Callable[..., torch.Tensor]) -> None:
    sparse, dense = to_sparse(torch.eye(3)), torch.ones(3, 2)
    # no rule for sparse layouts yet, so no guess: the dense operand (3*2 fp32, 24 B) and
    # the product (24 B) only. A CSR operand crashed the count before.
    assert measure(lambda: torch.mm(sparse, dense)).bytes_by_op == {"aten.mm": 48}


def test_an_in_place_op_reads_its_inputs_and_writes_self() -> None:
    a, b = torch.randn(64, 128), torch.randn(64, 128)
    # read a and b, write a: 3 * 32,768
    assert measure(lambda: a.add_(b)).bytes_by_op == {"aten.add_": 98_304}


def test_an_out_tensor_is_written_not_read() -> None:
    a, b, c = torch.randn(64, 128), torch.randn(64, 128), torch.empty(64, 128)
    # read a and b, write c: 3 * 32,768
    assert measure(lambda: torch.add(a, b, out=c)).bytes_by_op == {"aten.add": 98_304}


def test_a_copy_overwrites_its_destination_without_reading_it() -> None:
    a, b = torch.randn(64, 128), torch.randn(64, 128)
    # read b, write a: 2 * 32,768
    assert measure(lambda: a.copy_(b)).bytes_by_op == {"aten.copy_": 65_536}


@pytest.mark.parametrize(
    "fill",
    [
        lambda t: t.fill_(1.0),
        lambda t: t.uniform_(),
        lambda t: t.normal_(),
        lambda t: t.bernoulli_(0.5),
        lambda t: t.random_(0, 10),
        lambda t: t.exponential_(),
        lambda t: t.geometric_(0.5),
        lambda t: t.cauchy_(),
        lambda t: t.log_normal_(),
    ],
    ids=["fill", "uniform", "normal", "bernoulli", "random", "exponential", "geometric", "cauchy",
         "log_normal"],
)  # fmt: skip
def test_a_fill_writes_its_tensor_without_reading_it(fill: Callable[[torch.Tensor], Any]) -> None:
    t = torch.empty(256, 1024)
    # written once: 256 * 1,024 * 4 bytes; the values it had are never read
    assert measure(lambda: fill(t)).bytes_accessed == 1_048_576


def test_a_random_fill_reads_its_probabilities() -> None:
    t, p = torch.empty(64), torch.full((64,), 0.5)
    # p read, t written: 2 * 64 * 4
    assert measure(lambda: t.bernoulli_(p)).bytes_by_op == {"aten.bernoulli_": 512}


def test_training_dropout_writes_its_mask_once() -> None:
    x = torch.randn(256, 1024)
    # 256 * 1,024 fp32 is 1 MiB: the mask written (bernoulli_), scaled in place by 1/(1-p)
    # (div_: read, written), applied to x (mul: mask and x read, the output written)
    assert measure(lambda: F.dropout(x, 0.1, training=True)).bytes_by_op == {
        "aten.bernoulli_": 1_048_576, "aten.div_": 2_097_152, "aten.mul": 3_145_728,
    }  # fmt: skip


def test_comparing_metadata_moves_nothing() -> None:
    a, b = torch.randn(64, 128), torch.randn(64, 128)
    measured = measure(
        lambda: (
            torch.ops.aten.is_same_size(a, b),
            torch.ops.aten._has_same_storage_numel(a, b),
            torch.ops.aten._has_compatible_shallow_copy_type(a, b),
            torch.ops.aten._efficientzerotensor([64, 128]),
        )
    )
    assert measured.bytes_accessed == 0
    assert measured.unsupported == {}


@pytest.mark.parametrize("device", ["cpu", "meta", "fake"])
def test_an_embedding_bag_moves_the_same_bytes_on_every_device(
    device: Literal["cpu", "meta", "fake"],
) -> None:
    torch.manual_seed(0)
    bag = nn.EmbeddingBag(10, 4, mode="sum")
    indices, offsets = torch.tensor([1, 2, 4, 5, 4, 3, 2, 9]), torch.tensor([0, 3, 5])
    weights = torch.rand(8)

    def step(bag: nn.EmbeddingBag, *args: torch.Tensor) -> None:
        bag(args[0], args[1], per_sample_weights=args[2]).sum().backward()

    if device == "cpu":
        measured = measure(lambda: step(bag, indices, offsets, weights))
    else:
        measured = pytest_flops.count(step, bag, indices, offsets, weights, device=device)
    # offset2bag, bag_size and max_indices are sized by each kernel for its own
    # backward (the CPU's offset2bag is empty here, meta's holds 8): left out.
    # Forward: a weight row per index, 8*4*4 = 128 (of the table's 160), indices 8*8 =
    # 64, offsets 3*8 = 24, per-sample weights 8*4 = 32 read; the bags 3*4*4 = 48
    # written: 296. Backward: the sum's
    # gradient (one fp32 expanded, 4), indices 64, offsets 24, per-sample weights 32
    # read; the weight's gradient 160 written: 284.
    assert measured.bytes_by_op == {
        "aten._embedding_bag": 296, "aten._embedding_bag_backward": 284,
        "aten.ones_like": 4, "aten.sum": 52,
    }  # fmt: skip


def test_an_upcast_moves_more_bytes_at_equal_flops() -> None:
    a, b = torch.randn(64, 128, dtype=BF16), torch.randn(128, 32, dtype=BF16)
    bf16 = measure(lambda: a @ b)
    fp32 = measure(lambda: a.float() @ b.float())
    assert fp32.total == bf16.total == 2 * 64 * 128 * 32
    # each cast reads bf16 and writes fp32: 8,192*(2+4) = 49,152 and 4,096*(2+4) = 24,576;
    # the fp32 matmul moves twice the bf16 one's 28,672
    assert fp32.bytes_by_op == {"aten._to_copy": 49_152 + 24_576, "aten.mm": 57_344}


def test_math_attention_materializes_the_score_matrix_fused_attention_does_not() -> None:
    q, k, v = (torch.randn(1, 2, 64, 16) for _ in range(3))

    def attend() -> None:
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v)

    fused = measure(attend)
    with sdpa_kernel(SDPBackend.MATH):
        math = measure(attend)

    assert fused.total == math.total
    # q, k, v and the output 2*64*16*4 = 8,192 each, the log-sum-exp 2*64*4 = 512
    assert fused.bytes_accessed == 4 * 8_192 + 512
    # q and k scaled (read and write 8,192 each); QKᵀ reads 2 * 8,192 and writes the
    # 2*64*64*4 = 32,768 scores; softmax reads and writes them; PV reads them and v,
    # writes 8,192
    assert math.bytes_by_op == {
        "aten.mul": 2 * 2 * 8_192,
        "aten.bmm": (2 * 8_192 + 32_768) + (32_768 + 2 * 8_192),
        "aten._safe_softmax": 2 * 32_768,
    }


def test_a_bf16_train_step_splits_bytes_into_forward_and_backward_per_row() -> None:
    linear = nn.Linear(128, 32).to(BF16)
    x = torch.randn(64, 128, dtype=BF16)
    measured = measure(lambda: linear(x).sum().backward())
    # forward: addmm 28,736; sum reads 64*32*2 = 4,096 and writes 2; backward() makes
    # its seed with ones_like (writes a 2-byte scalar; reads nothing) before the engine
    assert measured.modules["Global"].bytes_forward == 28_736 + 4_098 + 2
    # backward: the grad of the sum is the scalar expanded (stride 0: 2 bytes);
    # grad W = gradᵀ @ x reads 2 + 16,384 and writes 32*128*2 = 8,192;
    # grad bias = sum over the batch reads 2 and writes 32*2 = 64
    assert measured.modules["Global"].bytes_backward == (2 + 16_384 + 8_192) + (2 + 64)
    row = measured.modules["Linear"]
    assert row.bytes_by_op == {"aten.addmm": 28_736, "aten.mm": 24_578, "aten.sum": 66}
    assert (row.bytes_forward, row.bytes_backward) == (28_736, 24_644)


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.calls: list[tuple[Any, tuple[Any, ...], dict[str, Any], Any]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        self.calls.append((func, args, kwargs or {}, out))
        return out


def test_bytes_equal_torch_runtime_estimation_where_the_rules_agree() -> None:
    # torch's estimator reads every tensor argument and writes every output, a
    # stride-0 dimension once: the same rules for ops with distinct inputs that
    # mutate nothing and return no view.
    a, b = torch.randn(64, 128, dtype=BF16), torch.randn(128, 32, dtype=BF16)
    bias, row = torch.randn(32, dtype=BF16), torch.randn(128)
    x = torch.randn(256, 512)
    with _Recorder() as recorder:
        torch.mm(a, b)
        torch.addmm(bias, a, b)
        torch.randn(64, 128) + row.expand(64, 128)
        x.t().contiguous()
        torch.relu(x)
        a.float()
        F.softmax(x, dim=-1)
    compared = 0
    for func, args, kwargs, out in recorder.calls:
        rule = byte_rule(func)
        if rule.free or rule.written_args or rule.out_names:
            continue
        inputs = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
        outputs = out if isinstance(out, tuple) else (out,)
        theirs = sum(map(get_num_bytes, inputs)) + sum(map(get_num_bytes, outputs))
        assert bytes_accessed(rule, args, kwargs, out) == theirs, func
        compared += 1
    assert compared == 8  # mm, addmm, randn, add, clone, relu, _to_copy, _softmax


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_writes_its_running_statistics_in_training_only(training: bool) -> None:
    norm = nn.BatchNorm1d(32).train(training)
    x = torch.randn(64, 32)
    with torch.no_grad():
        measured = measure(lambda: norm(x))
    # reads x (64*32*4 = 8,192), weight, bias, running mean and variance (32*4 = 128
    # each) and writes the output (8,192). Training also writes the running statistics
    # in place (2 * 128), which native_batch_norm's schema does not declare. Its saved
    # mean and inverse std (empty on a CPU in eval, not on meta) count on neither side.
    written = 2 * 128 if training else 0
    assert measured.bytes_by_op["aten.native_batch_norm"] == 8_192 + 4 * 128 + 8_192 + written
    # without running statistics there is nothing to update
    plain = nn.BatchNorm1d(32, track_running_stats=False).train(training)
    with torch.no_grad():
        assert measure(lambda: plain(x)).bytes_by_op["aten.native_batch_norm"] == (
            8_192 + 2 * 128 + 8_192
        )


def batch_norm_step(norm: nn.Module, x: torch.Tensor) -> None:
    norm(x).sum().backward()


@pytest.mark.parametrize("input_grad", [True, False], ids=["x grad", "no x grad"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_a_batch_norm_step_moves_the_same_bytes_on_cpu_meta_and_fake(
    training: bool, input_grad: bool
) -> None:
    import pytest_flops

    norm = nn.BatchNorm2d(3).train(training)
    x = torch.randn(2, 3, 4, 4, requires_grad=input_grad)
    expected = measure(lambda: batch_norm_step(norm, x))
    # 2*3*4*4 = 96 floats: x and the output 384 bytes each; 3 channels: 12 bytes.
    # forward: x, weight, bias, running mean, running var read (384 + 4*12), the output
    # written (384), and in training the running mean and var written (2*12).
    assert expected.bytes_by_op["aten.native_batch_norm"] == 816 + (24 if training else 0)
    # backward: the output's gradient (the expanded ones of sum's backward, stride 0:
    # 4 bytes), x, weight, running mean and var read (4 + 384 + 3*12); the gradients of
    # x (where it needs one: output_mask), weight and bias written (384 + 2*12); the meta
    # kernel returns a gradient of x that was not asked for, the CPU's None. The saved
    # mean and inverse std are left out as in the forward: on a CPU in eval they are
    # empty, on meta they are not.
    x_grad = 384 if input_grad else 0
    assert expected.bytes_by_op["aten.native_batch_norm_backward"] == 424 + x_grad + 24
    for device in ("meta", "fake"):
        assert pytest_flops.count(batch_norm_step, norm, x, device=device) == expected


def _batch_norm_calls(training: bool) -> dict[str, tuple[Any, ...]]:
    """Each batch norm kernel's forward and backward calls on a (2, 3, 4, 4) input, with
    the outputs its device returns (saved statistics of 3 channels; cuDNN's reserve)."""
    x, grad, y = (torch.randn(2, 3, 4, 4) for _ in range(3))
    weight, bias, mean, var, saved, saved_too, *grads = (torch.randn(3) for _ in range(8))
    reserve, grad_x = torch.empty(64), torch.randn(2, 3, 4, 4)
    forward = (x, weight, bias, mean, var, training, 0.1, 1e-5)
    stats = (mean, var, saved, saved_too)
    return {
        "native": (
            (torch.ops.aten.native_batch_norm.default, forward, (y, saved, saved_too)),
            (
                torch.ops.aten.native_batch_norm_backward.default,
                (grad, x, weight, *stats, training, 1e-5, [True] * 3),
                (grad_x, *grads),
            ),
        ),
        "cudnn": (
            (torch.ops.aten.cudnn_batch_norm.default, forward, (y, saved, saved_too, reserve)),
            (
                torch.ops.aten.cudnn_batch_norm_backward.default,
                (x, grad, weight, *stats, 1e-5, reserve),
                (grad_x, *grads),
            ),
        ),
        "miopen": (
            (torch.ops.aten.miopen_batch_norm.default, forward, (y, saved, saved_too)),
            (
                torch.ops.aten.miopen_batch_norm_backward.default,
                (x, grad, weight, *stats, 1e-5),
                (grad_x, *grads),
            ),
        ),
        "legit": (
            (torch.ops.aten._native_batch_norm_legit.default, forward, (y, saved, saved_too)),
            None,
        ),
    }


@pytest.mark.parametrize("kernel", ["native", "cudnn", "miopen", "legit"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_every_batch_norm_kernel_moves_the_same_bytes(kernel: str, training: bool) -> None:
    # 2*3*4*4 = 96 floats (384 bytes) per activation, 3 channels (12 bytes) per statistic.
    # Forward: x, weight, bias, running mean and var read, the output written; in training
    # the running statistics written too. Backward: the output's gradient, x, weight and
    # the running statistics read, three gradients written. The saved statistics and
    # cuDNN's reserve are the backend's: left out on every device.
    forward, backward = _batch_norm_calls(training)[kernel]
    op, args, out = forward
    assert bytes_accessed(byte_rule(op), args, {}, out) == 816 + (24 if training else 0)
    if backward is not None:
        op, args, out = backward
        assert bytes_accessed(byte_rule(op), args, {}, out) == 384 + 384 + 3 * 12 + 408


@pytest.mark.parametrize("allow_tf32", [False, True])
def test_fp32_matmuls_count_at_tf32_where_torch_allows_it(
    allow_tf32: bool, restored_precisions: None
) -> None:
    a, b = torch.randn(64, 128), torch.randn(128, 32)
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    measured = measure(lambda: (a @ b, a.to(BF16) @ b.to(BF16)))
    # 2*64*128*32 = 524,288 FLOPs each; the bf16 one is bf16 whatever the setting
    precision = "tf32" if allow_tf32 else "fp32"
    assert measured.modules["Global"].flops_by_precision == {
        "aten.mm": {precision: 524_288, "bf16": 524_288}
    }


def test_the_fixture_holds_the_bytes_of_its_blocks() -> None:
    from pytest_flops.counting.fixture import Flops

    a, b = torch.randn(64, 128, dtype=BF16), torch.randn(128, 32, dtype=BF16)
    flops = Flops()
    with flops():
        a @ b
    with flops():
        a @ b
    # two blocks accumulate: 2 * 28,672 as in the bf16 matmul above
    assert flops.bytes_accessed == 2 * 28_672
    assert flops.bytes_by_op == {"aten.mm": 2 * 28_672}
