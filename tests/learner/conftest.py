"""Fixtures of the learner's tests."""

from __future__ import annotations

import pytest

from db.runs import claim_next_run, request_training
from learner.rounds import run_round
from tests.learner.test_rounds_worker import label, make_project


@pytest.fixture
def trained(settings, tiny_model_dir):
    """The toy project with 16 labelled texts and one model version; (project id, rows)."""
    project_id, rows = make_project(settings, tiny_model_dir)
    label(settings, project_id, rows, 16)
    request_training(settings, project_id)
    run = claim_next_run(settings, "test")
    assert run_round(settings, run.id, project_id) == 1
    return project_id, rows
