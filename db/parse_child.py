"""The child process that parses and hashes a large import file (see ``db.importing``).

Run as ``python -m db.parse_child`` by the importer, never by hand. It reads one pickled
``(fd, offset, name, options)`` from standard input, where ``fd`` is the file, inherited from
the parent, and ``offset`` where to start reading it; then it writes pickled messages to
standard output, in order:

- ``("items", [row or rejected row, ...])``, many times;
- then one of ``("done", bytes_read)``, ``("failed", message)`` for a problem with the file
  (the parent raises ``ImportFailed`` with that message, after the items before it), or
  ``("crashed", traceback)`` for a bug.

Parsing holds the GIL; in its own process it no longer keeps the parent's writes waiting.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from typing import Any, BinaryIO

from db.errors import ImportFailed
from db.importing import _parsed, _Source

BATCH = 512
"""Rows per message: about 2 MB of pickled news-length texts."""


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Parse the file that ``stdin`` names and send what it holds to ``stdout``."""
    fd, offset, name, options = pickle.load(stdin)

    def send(message: tuple[str, Any]) -> None:
        pickle.dump(message, stdout, protocol=pickle.HIGHEST_PROTOCOL)

    with os.fdopen(fd, "rb") as stream:
        stream.seek(offset)
        source = _Source(stream, name, options.encoding)
        batch: list[Any] = []
        try:
            for item in _parsed(source, options):
                batch.append(item)
                if len(batch) >= BATCH:
                    send(("items", batch))
                    batch = []
            end: tuple[str, Any] = ("done", source.bytes_read)
        except ImportFailed as exc:
            end = ("failed", str(exc))
        except Exception:  # a bug: the parent shows the traceback
            end = ("crashed", traceback.format_exc())
        if batch:
            send(("items", batch))
        send(end)
    stdout.flush()


def main() -> int:
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:  # the parent stopped reading: the import ended early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
