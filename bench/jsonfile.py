"""Writing a benchmark's figures: one JSON file, its folder created if missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    """Writes ``data`` as indented JSON (UTF-8, final newline), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def emit(figures: Any, out: Path | None) -> None:
    """Prints ``figures`` as indented JSON, and writes them to ``out`` when given."""
    print(json.dumps(figures, indent=1), flush=True)
    if out:
        write_json(out, figures)
