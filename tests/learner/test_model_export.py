"""A trained model taken away as a folder or a zip, and loaded by transformers alone."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from app.cli import main
from db.errors import NotFound
from db.runs import latest_version
from learner.errors import InvalidArtefact, LearnerError
from learner.model_export import export_model, folder_name


def test_the_folder_is_a_checkpoint_transformers_loads_alone_with_the_label_names(
        settings, trained, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from learner.model import TransformerClassifier

    project_id, rows = trained
    version, out = export_model(settings, "toy", tmp_path / "model")
    assert version.version == 1 and out == tmp_path / "model"
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.id2label == {0: "fruit", 1: "vehicle"}
    texts = [text for _, text, _ in rows[:8]]
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=32,
                          return_tensors="pt")
        alone = torch.softmax(model(**batch).logits, dim=-1).numpy()
    ours = TransformerClassifier.load(latest_version(settings, project_id).artefact_path,
                                      device="cpu").predict_proba(texts)
    np.testing.assert_allclose(alone, ours, atol=1e-5)


def test_a_zip_holds_the_folder_under_the_projects_name(settings, trained, tmp_path):
    _, out = export_model(settings, "toy", tmp_path / "m.zip", version=1)
    names = zipfile.ZipFile(out).namelist()
    assert "toy-model-v1/labelwise.json" in names and "toy-model-v1/model.safetensors" in names
    assert all(name.startswith("toy-model-v1/") for name in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "m.zip"]  # no temporary file
    assert folder_name("News / 2026 ", 3) == "News-2026-model-v3"


def test_a_used_folder_a_missing_version_and_missing_files_are_refused(settings, trained,
                                                                       tmp_path):
    import shutil

    project_id, _ = trained
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    with pytest.raises(LearnerError, match="not an empty folder"):
        export_model(settings, "toy", used)
    assert [p.name for p in used.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_model(settings, "toy", empty)[1] == empty and (empty / "labelwise.json").exists()
    with pytest.raises(NotFound, match="no model version 2"):
        export_model(settings, "toy", tmp_path / "v2", version=2)
    shutil.rmtree(latest_version(settings, project_id).artefact_path)
    with pytest.raises(InvalidArtefact, match="No saved model"):
        export_model(settings, "toy", tmp_path / "gone.zip")
    assert not (tmp_path / "gone.zip").exists() and not (tmp_path / "v2").exists()


def test_the_cli_copies_a_model_out(settings, trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LABELWISE_DATA_DIR", str(settings.data_dir))
    assert main(["export-model", "--project", "toy", "--out", str(tmp_path / "m.zip")]) == 0
    assert (f"Wrote model version 1 (trained on 16 labels) to {tmp_path / 'm.zip'}."
            in capsys.readouterr().err)
    assert main(["export-model", "--project", "toy", "--out", str(tmp_path / "x"),
                 "--version", "4"]) == 1
    assert "no model version 4" in capsys.readouterr().err
