"""The snapshot reader, fuzzed: it returns a snapshot or raises SnapshotFormatError naming the file.

Any other exception (KeyError, TypeError, RecursionError...) would crash the
plugin instead of failing one test with a message that says what to repair.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_flops import Measurement, ModuleFlops, SnapshotFormatError
from pytest_flops.snapshots.format import FlopsSnapshot
from pytest_flops.snapshots.store import SnapshotStore

WHERE = "tests/__flops__/test_m.py/test_a.flops.json"

# Linear(9, 10) on a [4, 9] input: addmm 2*4*9*10 = 720 forward, weight grad mm 720
LINEAR = Measurement(
    modules={
        "Global": ModuleFlops(forward=720, backward=720, by_op={"aten.addmm": 720, "aten.mm": 720}),
        "Net": ModuleFlops(forward=720, backward=720, by_op={"aten.addmm": 720, "aten.mm": 720}),
    },
    unsupported={"custom.halve": 2},
)
VALID = FlopsSnapshot(test="test_a", depth=3, measurements={"default": LINEAR, "decode": LINEAR})
VALID_DATA: dict[str, Any] = json.loads(VALID.to_text())

fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=-1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def read(text: str) -> FlopsSnapshot | None:
    """Parse ``text``: the snapshot, or None after the one error we allow."""
    try:
        snapshot = FlopsSnapshot.from_text(text, where=WHERE)
    except SnapshotFormatError as error:
        assert str(error).startswith(f"{WHERE}: "), error
        return None
    # Whatever the reader accepts, the writer writes back to the same snapshot.
    assert FlopsSnapshot.from_text(snapshot.to_text(), where=WHERE) == snapshot
    return snapshot


@fuzz
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    read(text)


@fuzz
@given(json_values)
def test_arbitrary_json(value: object) -> None:
    read(json.dumps(value))
    try:
        Measurement.from_dict(value, where=WHERE)
    except SnapshotFormatError as error:
        assert str(error).startswith(f"{WHERE}: ")


def paths_into(data: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every key path into nested dicts and lists, the root's children first."""
    if isinstance(data, dict):
        items: list[tuple[str | int, object]] = list(data.items())
    elif isinstance(data, list):
        items = list(enumerate(data))
    else:
        return []
    paths: list[tuple[str | int, ...]] = []
    for key, value in items:
        paths.append((*prefix, key))
        paths += paths_into(value, (*prefix, key))
    return paths


VALID_PATHS = paths_into(VALID_DATA)

Mutation = Callable[[dict[str, Any], tuple[str | int, ...]], None]


def parent_of(data: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    for key in path[:-1]:
        data = data[key]  # type: ignore[index]
    return data


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    replacement = draw(
        json_values
        | st.sampled_from([-1, -720, 10**400, True, False, 720.0, 1e308, "720", "", None, [], {}])
    )
    unknown_key = draw(st.text(max_size=8))

    def replace(data: dict[str, Any], path: tuple[str | int, ...]) -> None:
        parent_of(data, path)[path[-1]] = copy.deepcopy(replacement)

    def drop(data: dict[str, Any], path: tuple[str | int, ...]) -> None:
        del parent_of(data, path)[path[-1]]

    def add_key(data: dict[str, Any], path: tuple[str | int, ...]) -> None:
        target = parent_of(data, path)
        if isinstance(target, dict):
            target[unknown_key] = copy.deepcopy(replacement)

    return draw(st.sampled_from([replace, drop, add_key]))


@fuzz
@given(
    st.lists(st.tuples(mutations(), st.sampled_from(VALID_PATHS)), min_size=1, max_size=3),
)
def test_mutated_valid_snapshot(changes: list[tuple[Mutation, tuple[str | int, ...]]]) -> None:
    data = copy.deepcopy(VALID_DATA)
    for mutate, path in changes:
        try:
            mutate(data, path)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced what this path pointed into
    read(json.dumps(data, indent=2))


@fuzz
@given(st.binary(max_size=200) | st.sampled_from([b"\xff\xfe{", VALID.to_text().encode()[:-40]]))
def test_arbitrary_file_bytes(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    location = tmp_path_factory.mktemp("fuzz") / "test_a.flops.json"
    location.write_bytes(content)
    try:
        SnapshotStore().read(location, where=str(location))
    except SnapshotFormatError as error:
        assert str(error).startswith(f"{location}: ")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[" * 100_000, "not valid JSON (maximum recursion depth exceeded"),
        ('{"version": 1, "depth": ' + "9" * 5000 + "}", "not valid JSON (Exceeds the limit"),
        ('{"version": 1, "test": "t", "depth": NaN, "measurements": {}}', "got float nan"),
    ],
    ids=["nested too deep", "integer too long", "NaN"],
)
def test_input_that_json_itself_chokes_on(text: str, problem: str) -> None:
    with pytest.raises(SnapshotFormatError) as error:
        FlopsSnapshot.from_text(text, where=WHERE)
    assert str(error.value).startswith(f"{WHERE}: ")
    assert problem in str(error.value)


def test_every_truncation_of_a_valid_file_is_reported() -> None:
    text = VALID.to_text()
    assert read(text) == VALID
    for end in range(len(text.rstrip())):  # only the trailing newline may go
        with pytest.raises(SnapshotFormatError, match=f"^{WHERE}: "):
            FlopsSnapshot.from_text(text[:end], where=WHERE)


def test_every_single_mutation_of_a_count_is_caught() -> None:
    # Each count, replaced alone by a wrong value, gives the error naming its place.
    counts = [path for path in VALID_PATHS if type(parent_of(VALID_DATA, path)[path[-1]]) is int]
    # version, depth, per measurement: total, forward, backward, bytes_accessed, per row
    # forward, backward, two ops and the bytes' forward and backward, and one unsupported op
    assert len(counts) == 1 + 1 + 2 * (3 + 1 + 2 * (2 + 2 + 2) + 1)
    for path in counts:
        for wrong in (-1, "720", 720.0, True, None):
            data = copy.deepcopy(VALID_DATA)
            parent_of(data, path)[path[-1]] = wrong
            with pytest.raises(SnapshotFormatError, match=f"^{WHERE}: "):
                FlopsSnapshot.from_text(json.dumps(data), where=WHERE)
