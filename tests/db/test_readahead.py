"""The read-ahead thread the importer parses in."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from db.readahead import read_ahead


def test_items_come_in_order() -> None:
    assert list(read_ahead(iter(range(10_000)), chunk=7, depth=2)) == list(range(10_000))
    assert list(read_ahead(iter([]))) == []


def test_producer_error_is_raised_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield from range(5)
        raise ValueError("line 6 is bad")

    got: list[int] = []
    with pytest.raises(ValueError, match="line 6 is bad"):
        for item in read_ahead(items(), chunk=2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_stopping_early_stops_and_joins_the_producer() -> None:
    produced = []
    finished = threading.Event()

    def items() -> Iterator[int]:
        try:
            for i in range(1_000_000):
                produced.append(i)
                yield i
        finally:
            finished.set()

    reader = read_ahead(items(), chunk=10, depth=2)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()
    # Joined on close: the producer has already stopped, well short of the end.
    assert not any(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())
    assert len(produced) < 1_000
    assert finished.is_set()


def test_consumer_error_stops_the_producer() -> None:
    with pytest.raises(RuntimeError):
        for item in read_ahead(iter(range(100_000)), chunk=10, depth=1):
            if item == 50:
                raise RuntimeError("the writer failed")
    assert not any(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())
