"""Agreement statistics against hand-computed values; gold labels win in exports and training."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import insert

from db.annotations import annotate
from db.engine import read_unit, write_unit
from db.errors import LabelwiseError
from db.exporting import export
from db.models import Example, Role
from db.projects import create_project
from db.review import (
    agreement,
    cohen_kappa,
    decide_label,
    disagreements,
    krippendorff_alpha,
    set_gold,
)
from db.texts import text_hash
from db.users import Forbidden, add_user
from learner.rounds import final_labels


def test_kappa_and_alpha_match_hand_computed_values():
    assert cohen_kappa(list("aabb"), list("aabb")) == 1.0
    assert cohen_kappa(list("aabb"), list("abab")) == 0.0
    # po = 0.75, pe = 0.5 -> 0.5
    assert cohen_kappa(list("aabb"), list("aaba")) == pytest.approx(0.5)
    # coincidences: n_a = n_b = 3, 2 disagreeing pairs: 1 - 5 * 2 / (36 - 18)
    assert krippendorff_alpha([["a", "a"], ["a", "b"], ["b", "b"]]) == pytest.approx(1 - 10 / 18)
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == 1.0
    assert krippendorff_alpha([["a", "a"]]) is None  # one label only: undefined
    assert krippendorff_alpha([["a"]]) is None


def test_disagreements_and_gold_override(settings):
    with write_unit(settings) as session:
        project = create_project(session, "p", labels=["a", "b"])
        session.execute(insert(Example), [
            {"project_id": project.id, "text": t, "text_hash": text_hash(t)} for t in ("x", "y")])
    add_user(settings, "boss", "boss-password", Role.ADMIN)
    add_user(settings, "ann", "ann-password")
    for who, labels in {"ann": ("a", "a"), "bob": ("b", "a")}.items():
        for example_id, label in zip((1, 2), labels):
            annotate(settings, project.id, example_id, who, label)
    stats = agreement(settings, project.id, ["a", "b"])
    assert stats.items == 2 and [(p.first, p.second, p.shared) for p in stats.pairs] == [
        ("ann", "bob", 2)]
    found = disagreements(settings, project.id)
    assert [(d.example_id, d.labels, d.gold) for d in found] == [
        (1, (("ann", "a"), ("bob", "b")), None)]
    with pytest.raises(Forbidden):
        set_gold(settings, project.id, 1, "b", "ann")  # annotators cannot adjudicate
    with pytest.raises(LabelwiseError, match="Unknown label"):
        set_gold(settings, project.id, 1, "zzz", "boss")
    set_gold(settings, project.id, 1, "b", "boss")  # tie a/b: gold decides
    out = io.BytesIO()
    export(settings, "p", out, "jsonl")
    labels = {json.loads(line)["text"]: json.loads(line)["label"] for line in out.getvalue().splitlines()}
    assert labels == {"x": "b", "y": "a"}
    with read_unit(settings) as session:
        assert final_labels(session, project.id)[1] == ("b", False)
    assert disagreements(settings, project.id)[0].gold == "b"


def test_an_admins_correction_outvotes_the_annotators_and_labels_an_unanswered_text(
        any_settings):
    """"Change a label" on the Data page: the label wins in training and exports even against
    a majority, an unanswered text becomes labelled, all in one unit; annotators cannot."""
    with write_unit(any_settings) as session:
        project = create_project(session, "p", labels=["a", "b"])
        session.execute(insert(Example), [{"project_id": project.id, "text": t,
                                           "text_hash": text_hash(t)} for t in ("x", "y", "z")])
    add_user(any_settings, "boss", "boss-password", Role.ADMIN)
    for who in ("ann", "bob"):
        annotate(any_settings, project.id, 1, who, "a")
    assert decide_label(any_settings, project.id, 1, "b", "boss") is False  # outvotes two "a"
    assert decide_label(any_settings, project.id, 2, "a", "boss") is True  # was unanswered
    with pytest.raises(Forbidden):
        decide_label(any_settings, project.id, 3, "a", "ann")
    with pytest.raises(LabelwiseError, match="Unknown label"):
        decide_label(any_settings, project.id, 3, "zzz", "boss")
    with pytest.raises(LabelwiseError, match="not in this project"):
        decide_label(any_settings, project.id, 99, "a", "boss")
    with read_unit(any_settings) as session:
        assert final_labels(session, project.id) == {1: ("b", False), 2: ("a", False)}
    out = io.BytesIO()
    export(any_settings, "p", out, "jsonl")
    assert {json.loads(line)["text"]: json.loads(line)["label"]
            for line in out.getvalue().splitlines()} == {"x": "b", "y": "a"}


def test_an_export_filtered_by_label_finds_a_text_by_its_gold_label(any_settings):
    """By text, the label filter is on the final label: a gold label no annotator gave counts
    (the filter's pre-selection looked at the annotations' labels only); by annotation, the
    annotations' own labels."""
    from db.exporting import ExportFilters

    with write_unit(any_settings) as session:
        project = create_project(session, "p", labels=["a", "b"])
        session.execute(insert(Example), [{"project_id": project.id, "text": t,
                                           "text_hash": text_hash(t)} for t in ("x", "y")])
    add_user(any_settings, "boss", "boss-password", Role.ADMIN)
    for who in ("ann", "bob"):
        annotate(any_settings, project.id, 1, who, "a")
        annotate(any_settings, project.id, 2, who, "a")
    set_gold(any_settings, project.id, 1, "b", "boss")

    def texts(labels, per_annotation=False):
        out = io.BytesIO()
        export(any_settings, "p", out, "jsonl", ExportFilters(labels=labels), per_annotation)
        return sorted(json.loads(line)["text"] for line in out.getvalue().splitlines())

    assert texts(["b"]) == ["x"]
    assert texts(["a"]) == ["y"]
    assert texts(["b"], per_annotation=True) == []
    assert texts(["a"], per_annotation=True) == ["x", "x", "y", "y"]
