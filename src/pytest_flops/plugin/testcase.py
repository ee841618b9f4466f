"""Measuring in ``unittest.TestCase`` methods, which cannot request pytest fixtures.

::

    class TestModel(FlopsTestCase, unittest.TestCase):
        def test_forward(self):
            model = torch.nn.Linear(4, 6)
            with self.flops(model):
                model(torch.randn(3, 4))

Under pytest, ``self.flops`` is the test's ``flops`` fixture: the test is compared
with its snapshot, ``--flops-update`` writes it, and ``self.subTest`` blocks,
reruns and xdist behave as for a function test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_flops.counting.fixture import Flops

__all__ = ["FlopsTestCase"]


class FlopsTestCase:
    """A mixin for ``unittest.TestCase`` classes: ``self.flops`` is the ``flops`` fixture."""

    flops: Flops

    @pytest.fixture(autouse=True)
    def _pytest_flops_fixture(self, flops: Flops) -> None:
        self.flops = flops
