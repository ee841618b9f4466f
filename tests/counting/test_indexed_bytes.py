"""Bytes accessed by gathers and scatters: the elements they index, not whole tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from pytest_flops import FlopCounterMode

BF16 = torch.bfloat16


def bytes_by_op(step: Callable[[], Any]) -> dict[str, int]:
    with FlopCounterMode(display=False) as mode:
        step()
    return mode.to_measurement().bytes_by_op


@pytest.mark.parametrize(("rows", "device"), [(1_000, "cpu"), (128_000, "meta")])
def test_an_embedding_reads_the_rows_it_looks_up(rows: int, device: str) -> None:
    embedding = nn.Embedding(rows, 4_096, dtype=BF16, device=device)
    token = torch.tensor([5], device=device)
    # one row of 4,096 bf16 (8,192 B) read and written out, the int64 index read (8);
    # the whole table (1 GB for an LLM's 128,000 rows) counted before
    assert bytes_by_op(lambda: embedding(token)) == {"aten.embedding": 16_392}


def test_a_gather_reads_what_it_gathers_at_most_its_whole_source() -> None:
    x = torch.randn(100, 64)  # 25,600 B
    rows = torch.tensor([3, 7])
    many = torch.zeros(300, dtype=torch.long)  # row 0, 300 times: more than x holds
    assert bytes_by_op(lambda: x.index_select(0, rows)) == {
        "aten.index_select": 2 * 64 * 4 * 2 + 2 * 8  # 2 rows read, written; the index
    }
    assert bytes_by_op(lambda: x[rows]) == {"aten.index": 2 * 64 * 4 * 2 + 2 * 8}
    assert bytes_by_op(lambda: torch.gather(x, 1, rows.view(1, 2))) == {
        "aten.gather": 2 * 4 * 2 + 2 * 8  # 2 elements read and written, the index
    }
    assert bytes_by_op(lambda: x.take(rows)) == {"aten.take": 2 * 4 * 2 + 2 * 8}
    # 300 rows written (76,800 B), read from x at most once whole (25,600), the index
    # 300 * 8 = 2,400
    assert bytes_by_op(lambda: x.index_select(0, many)) == {"aten.index_select": 104_800}


def test_writing_one_token_into_a_cache_moves_that_token_however_it_is_written() -> None:
    cache = torch.zeros(1, 8, 4_096, 64, dtype=BF16)  # 8,388,608 B
    new = torch.randn(1, 8, 1, 64, dtype=BF16)  # 1,024 B
    position = torch.tensor([17])
    # the token read and written, the int64 position read: as a slice's copy_ (2,048),
    # plus the index
    assert bytes_by_op(lambda: cache.index_copy_(2, position, new)) == {"aten.index_copy_": 2_056}
    assert bytes_by_op(lambda: cache.__setitem__((slice(None), slice(None), position), new)) == {
        "aten.index_put_": 2_056
    }
    assert bytes_by_op(lambda: cache[:, :, 18:19].copy_(new)) == {"aten.copy_": 2_048}


def test_an_accumulating_scatter_reads_the_elements_it_adds_into() -> None:
    x = torch.zeros(100, 64)
    rows = torch.tensor([3, 7])
    source = torch.ones(2, 64)  # 512 B
    # the 2 rows of x read and written (2 * 512), the source (512) and index (16) read
    assert bytes_by_op(lambda: x.index_add_(0, rows, source)) == {"aten.index_add_": 1_552}
    assert bytes_by_op(lambda: x.index_put_((rows,), source, accumulate=True)) == {
        "aten.index_put_": 1_552
    }
    # index_fill_ writes a row per index (2 * 256) and reads the index: no source
    assert bytes_by_op(lambda: x.index_fill_(0, rows, 1.0)) == {"aten.index_fill_": 528}


def test_a_scatter_reads_as_many_source_elements_as_its_index_holds() -> None:
    x = torch.zeros(10, 10)
    index = torch.tensor([[0, 1, 2]])  # 3 elements, 24 B
    source = torch.ones(10, 10)  # 400 B, of which scatter_ takes the first 3
    # 3 elements written (12), 3 of the source (12) and the index (24) read
    assert bytes_by_op(lambda: x.scatter_(0, index, source)) == {"aten.scatter_": 48}
    # scatter_add_ reads the 3 elements it adds into too
    assert bytes_by_op(lambda: x.scatter_add_(0, index, source)) == {"aten.scatter_add_": 60}
    assert bytes_by_op(lambda: x.scatter_reduce_(0, index, source, "amax")) == {
        "aten.scatter_reduce_": 60
    }


def test_a_masked_write_touches_what_only_the_mask_tells_so_all_of_self() -> None:
    x = torch.zeros(10, 10)
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[0, 0] = True
    # the mask (100), the value (one fp32, 4) read; x (400) written whole: the number
    # of True in the mask is data, which meta and fake tensors do not hold
    assert bytes_by_op(lambda: x.__setitem__(mask, 1.0)) == {"aten.index_put_": 504}


def test_an_embedding_backward_writes_the_whole_gradient_table() -> None:
    embedding = nn.Embedding(1_000, 16)
    step = bytes_by_op(lambda: embedding(torch.tensor([1, 2])).sum().backward())
    # it zero-fills the whole (1,000 x 16) fp32 gradient (64,000 B) and reads the
    # output gradient (2 x 16 expanded from one fp32: 4) and the indices (16)
    assert step["aten.embedding_dense_backward"] == 64_020
