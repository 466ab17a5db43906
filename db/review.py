"""Agreement between annotators, disagreements to review, and adjudicated gold labels."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from db.annotations import record_answer
from db.engine import read_unit, write_unit
from db.errors import LabelwiseError, NotFound
from db.models import Annotation, Annotator, Example, Label, utcnow
from db.projects import label_ids
from db.settings import Settings
from db.users import require_admin


@dataclass(frozen=True)
class PairAgreement:
    first: str
    second: str
    shared: int
    kappa: float | None


@dataclass(frozen=True)
class Agreement:
    alpha: float | None
    per_label_alpha: dict[str, float | None]
    pairs: list[PairAgreement]
    items: int  # texts with two or more labels


@dataclass(frozen=True)
class Disagreement:
    example_id: int
    text: str
    labels: tuple[tuple[str, str], ...]  # (annotator, label)
    gold: str | None


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two annotators over the same texts (None when undefined)."""
    n = len(first)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(first, second)) / n
    a_counts, b_counts = Counter(first), Counter(second)
    expected = sum(a_counts[k] * b_counts.get(k, 0) for k in a_counts) / (n * n)
    return None if expected == 1 else (observed - expected) / (1 - expected)


def krippendorff_alpha(units: Sequence[Sequence[str]]) -> float | None:
    """Krippendorff's alpha for nominal labels; each unit is the labels one text received.

    Units with fewer than two labels carry no information and are left out.
    """
    units = [u for u in units if len(u) >= 2]
    if not units:
        return None
    coincidence: Counter[tuple[str, str]] = Counter()
    for unit in units:
        m = len(unit)
        for i, a in enumerate(unit):
            for j, b in enumerate(unit):
                if i != j:
                    coincidence[(a, b)] += 1 / (m - 1)
    totals: Counter[str] = Counter()
    for (a, _), weight in coincidence.items():
        totals[a] += weight
    n = sum(totals.values())
    disagreeing = sum(w for (a, b), w in coincidence.items() if a != b)
    chance = n * n - sum(v * v for v in totals.values())  # sum of n_c * n_k over c != k
    if chance == 0:
        return None  # a single label throughout: agreement is undefined
    return 1 - (n - 1) * disagreeing / chance


def _labels_by_text(settings: Settings, project_id: int) -> dict[int, dict[str, str]]:
    with read_unit(settings) as session:
        rows = session.execute(
            select(Annotation.example_id, Annotator.name, Label.name)
            .join(Annotator, Annotator.id == Annotation.annotator_id)
            .join(Label, Label.id == Annotation.label_id)
            .join(Example, Example.id == Annotation.example_id)
            .where(Example.project_id == project_id)
        ).all()
    by_text: dict[int, dict[str, str]] = defaultdict(dict)
    for example_id, who, label in rows:
        by_text[example_id][who] = label
    return by_text


def agreement(settings: Settings, project_id: int, labels: Sequence[str]) -> Agreement:
    """Krippendorff's alpha overall and per label (one against the rest), kappa per pair."""
    multi = {i: given for i, given in _labels_by_text(settings, project_id).items()
             if len(given) >= 2}
    units = [list(given.values()) for given in multi.values()]
    per_label = {
        label: krippendorff_alpha([[str(v == label) for v in unit] for unit in units])
        for label in labels
    }
    pairs = []
    annotators = sorted({who for given in multi.values() for who in given})
    for a, b in combinations(annotators, 2):
        shared = [(g[a], g[b]) for g in multi.values() if a in g and b in g]
        if shared:
            pairs.append(PairAgreement(a, b, len(shared),
                                       cohen_kappa([x for x, _ in shared], [y for _, y in shared])))
    return Agreement(krippendorff_alpha(units), per_label, pairs, len(multi))


def disagreements(settings: Settings, project_id: int, limit: int = 200) -> list[Disagreement]:
    """Texts whose annotators gave different labels, without gold first."""
    differ = {i: g for i, g in _labels_by_text(settings, project_id).items()
              if len(set(g.values())) > 1}
    if not differ:
        return []
    with read_unit(settings) as session:
        rows = session.execute(
            select(Example.id, Example.text, Label.name)
            .outerjoin(Label, Label.id == Example.gold_label_id)
            .where(Example.id.in_(list(differ)))
            .order_by(Example.gold_label_id.is_not(None), Example.id)
            .limit(limit)
        ).all()
    return [Disagreement(i, text, tuple(sorted(differ[i].items())), gold) for i, text, gold in rows]


def set_gold(settings: Settings, project_id: int, example_id: int, label: str | None,
             decided_by: str) -> None:
    """Record (or clear, with None) the adjudicated label of a text; admins only."""
    require_admin(settings, decided_by)
    with write_unit(settings) as session:
        _write_gold(session, project_id, example_id, label, decided_by)


def decide_label(settings: Settings, project_id: int, example_id: int, label: str,
                 decided_by: str) -> bool:
    """An admin's correction of a text's label (the Data page's "Change a label"), in one unit.

    The label becomes the text's gold label, which training and exports take over the
    annotators' answers (a vote of the admin's could be outvoted). Only answered texts count as
    labelled, so a text nobody has answered gets the admin's answer too.

    Returns:
        True when the admin's answer was recorded as well (the text had none).

    Raises:
        Forbidden: ``decided_by`` is not an active admin.
        NotFound: the text is not in the project.
        LabelwiseError: the label is not one of the project's.
    """
    require_admin(settings, decided_by)
    with write_unit(settings) as session:
        _write_gold(session, project_id, example_id, label, decided_by)
        if session.scalar(select(exists().where(Annotation.example_id == example_id))):
            return False
        record_answer(session, project_id, example_id, decided_by, label)
        return True


def _write_gold(session: Session, project_id: int, example_id: int, label: str | None,
                decided_by: str) -> None:
    ids = label_ids(session, project_id)
    if label is not None and label not in ids:
        raise LabelwiseError(f"Unknown label {label!r}.")
    result = session.execute(
        update(Example)
        .where(Example.id == example_id, Example.project_id == project_id)
        .values(gold_label_id=None if label is None else ids[label],
                gold_by=None if label is None else decided_by,
                gold_at=None if label is None else utcnow())
    )
    if not result.rowcount:
        raise NotFound(f"Text {example_id} is not in this project.")
