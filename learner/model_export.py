"""A project's trained model to take away: the folder a round saved, as a folder or a zip.

It is a plain Hugging Face checkpoint (safetensors weights, a config whose ``id2label`` holds
the label names, the tokenizer) plus ``labelwise.json`` (the classes, the base model, the
training settings and history), so transformers loads it as it is, without Labelwise::

    from transformers import pipeline
    classify = pipeline("text-classification", model="News-model-v3")
    classify("Shares fell sharply")  # [{'label': 'business', 'score': 0.97}]
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import BinaryIO

from db.engine import read_unit
from db.projects import get_project
from db.runs import VersionInfo, find_version
from db.settings import Settings
from db.texts import file_stem
from learner.errors import LearnerError
from learner.model import saved_classes


def folder_name(project: str, version: int) -> str:
    """``<project>-model-v<version>``, the project's name reduced to safe characters."""
    return f"{file_stem(project)}-model-v{version}"


def write_zip(source: Path, stream: BinaryIO, inside: str) -> None:
    """Every file of the model folder ``source`` into a zip on ``stream``, under ``inside/``."""
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                zf.write(path, f"{inside}/{path.relative_to(source).as_posix()}")


def zip_bytes(source: Path, inside: str) -> bytes:
    """The zip of `write_zip`, in memory (a download)."""
    buffer = io.BytesIO()
    write_zip(source, buffer, inside)
    return buffer.getvalue()


def export_model(settings: Settings, project: str, out: Path | str,
                 version: int | None = None) -> tuple[VersionInfo, Path]:
    """Copy a model version's folder to ``out``: a zip where ``out`` ends in ``.zip``, else a
    folder (new, or empty). Written beside its target and renamed, so a failed copy leaves
    nothing.

    Returns:
        The version copied, and where.

    Raises:
        NotFound: no such project, or it has no such model version (or none).
        InvalidArtefact: the version's folder is missing or incomplete.
        LearnerError: ``out`` is a folder that is not empty.
    """
    with read_unit(settings) as session:
        info = get_project(session, project)
    chosen = find_version(settings, info.id, version)
    source = Path(chosen.artefact_path)
    saved_classes(source)  # a complete model, or InvalidArtefact saying what is wrong
    target = Path(out)
    if target.suffix.lower() != ".zip" and target.exists() and (
            not target.is_dir() or any(target.iterdir())):
        raise LearnerError(f"{target} exists and is not an empty folder: give a new path.")
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if target.suffix.lower() == ".zip":
            with open(tmp, "wb") as stream:
                write_zip(source, stream, folder_name(info.name, chosen.version))
        else:
            shutil.copytree(source, tmp)
        if target.is_dir():
            target.rmdir()  # empty: checked above
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    return chosen, target
