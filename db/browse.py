"""Browsing and searching a project's texts (the Data page)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, select

from db.engine import read_unit
from db.models import Annotation, Annotator, Example, Label
from db.settings import Settings


@dataclass(frozen=True)
class ExampleRow:
    id: int
    text: str
    source_row: int | None
    labels: tuple[tuple[str, str], ...]  # (annotator, label) pairs
    updated_at: datetime | None


@dataclass(frozen=True)
class Page:
    rows: list[ExampleRow]
    total: int


def search_examples(
    settings: Settings,
    project_id: int,
    *,
    contains: str | None = None,
    label: str | None = None,
    annotator: str | None = None,
    labelled: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """A page of texts matching every filter, in import order; ``total`` counts all matches.

    Args:
        contains: case-insensitive substring of the text (``%`` and ``_`` match literally).
        label: only texts somebody labelled so.
        annotator: only texts this annotator labelled.
        labelled: True for labelled texts only, False for unlabelled ones only.
    """
    conditions = [Example.project_id == project_id]
    if contains:
        conditions.append(Example.text.icontains(contains, autoescape=True))
    any_annotation = exists().where(Annotation.example_id == Example.id)
    if labelled is True:
        conditions.append(any_annotation)
    elif labelled is False:
        conditions.append(~any_annotation)
    if label or annotator:
        match = exists().where(Annotation.example_id == Example.id)
        if label:
            match = match.where(
                Annotation.label_id == Label.id, Label.name == label, Label.project_id == project_id
            )
        if annotator:
            match = match.where(Annotation.annotator_id == Annotator.id, Annotator.name == annotator)
        conditions.append(match)
    with read_unit(settings) as session:
        total = session.scalar(select(func.count()).select_from(Example).where(*conditions)) or 0
        found = session.execute(
            select(Example.id, Example.text, Example.source_row)
            .where(*conditions)
            .order_by(Example.id)
            .limit(limit)
            .offset(offset)
        ).all()
        ids = [r.id for r in found]
        given: dict[int, list[tuple[str, str, datetime]]] = {}
        if ids:
            for example_id, who, name, updated in session.execute(
                select(Annotation.example_id, Annotator.name, Label.name, Annotation.updated_at)
                .join(Annotator, Annotator.id == Annotation.annotator_id)
                .join(Label, Label.id == Annotation.label_id)
                .where(Annotation.example_id.in_(ids))
                .order_by(Annotation.updated_at)
            ):
                given.setdefault(example_id, []).append((who, name, updated))
    rows = [
        ExampleRow(
            id=r.id,
            text=r.text,
            source_row=r.source_row,
            labels=tuple((who, name) for who, name, _ in given.get(r.id, [])),
            updated_at=max((u for *_, u in given.get(r.id, [])), default=None),
        )
        for r in found
    ]
    return Page(rows=rows, total=int(total))
