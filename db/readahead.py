"""Run an iterator in a background thread, a few chunks ahead of its consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def read_ahead(items: Iterable[T], chunk: int = 256, depth: int = 8) -> Iterator[T]:
    """Yield ``items`` in order while a daemon thread produces the next ones.

    The producer hands over lists of ``chunk`` items through a queue of ``depth`` lists, so
    memory holds at most ``(depth + 2) * chunk`` items. An exception in the producer is raised
    in the consumer at the point it happened; when the consumer stops early (an exception, or
    closing the generator), the producer stops at its next chunk and is joined.
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        batch: list[T] = []
        try:
            for item in items:
                batch.append(item)
                if len(batch) >= chunk:
                    if not put(batch):
                        return
                    batch = []
            end: object = _DONE
        except BaseException as exc:  # handed to the consumer, raised after the items before it
            end = exc
        if not batch or put(batch):
            put(end)

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            got = handoff.get()
            if got is _DONE:
                return
            if isinstance(got, BaseException):
                raise got
            yield from got  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
