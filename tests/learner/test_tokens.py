"""Tokenising from prefixes, and the packed token arrays that batches are cut from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import learner.tokens as tokens
from learner.model import BUILTIN_MODEL, resolve_model_path


def _tokenizer(source: str, padding_side: str = "right"):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    tokenizer.padding_side = padding_side
    return tokenizer


@pytest.mark.parametrize("chars_per_token, encode_batch", [(1, 1024), (2, 50), (6, 1024), (8, 7)])
def test_tokenising_from_a_prefix_gives_the_same_batch_as_the_whole_text(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, chars_per_token: int,
    encode_batch: int,
) -> None:
    from db.demo import iter_corpus

    monkeypatch.setattr(tokens, "PREFIX_CHARS_PER_TOKEN", chars_per_token)
    monkeypatch.setattr(tokens, "ENCODE_BATCH", encode_batch)  # packed per call, then joined
    news = [row["text"] for row, _ in zip(iter_corpus(), range(300))]
    odd = ["word " * 40, "x" * 500, "a" + " " * 400 + "b c d e f", "\t".join(["apple"] * 60),
           "café naïve 東京タワー " * 30, "short", "", " lead", "trail " * 3 + "\n" * 50 + "end"]
    texts = news + odd
    for source in (str(tiny_model_dir), resolve_model_path(BUILTIN_MODEL)):
        tokenizer = _tokenizer(source)
        for max_length in (8, 16, 128):
            fast = tokens.encode(tokenizer, texts, max_length).batch(np.arange(len(texts)), "cpu")
            whole = tokenizer(texts, truncation=True, max_length=max_length, padding=True,
                              return_tensors="np")
            assert set(fast) == set(whole) and len(fast) == 3  # ids, token types, mask
            for name, array in fast.items():
                np.testing.assert_array_equal(array.numpy(), whole[name], err_msg=name)


@pytest.mark.parametrize("padding_side, encode_batch", [
    ("right", 1024), ("left", 1024), ("right", 3), ("left", 3)])
def test_a_batch_is_its_rows_padded_to_the_longest_of_them(
        tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, padding_side: str,
        encode_batch: int) -> None:
    monkeypatch.setattr(tokens, "ENCODE_BATCH", encode_batch)  # calls of 3: widths 11, 8, 4
    tokenizer = _tokenizer(str(tiny_model_dir), padding_side)
    tokenizer.pad_token = tokenizer.unk_token  # a padding id that is not 0
    assert tokenizer.pad_token_id != 0
    texts = [" ".join(["apple"] * n) for n in (3, 9, 1, 6, 4, 7, 2)] + [""]
    packed = tokens.encode(tokenizer, texts, 32)
    assert packed.lengths.tolist() == [n + 2 for n in (3, 9, 1, 6, 4, 7, 2, 0)]  # [CLS] … [SEP]
    for idx in ([4, 0, 6], [2], [7, 2], list(range(8)), [1, 1, 5]):
        batch = packed.batch(np.array(idx), "cpu")
        rows = [texts[i] for i in idx]
        expected = tokenizer(rows, truncation=True, max_length=32, padding=True, return_tensors="np")
        assert batch["input_ids"].shape[1] == max(packed.lengths[idx])
        for name, array in batch.items():
            assert array.dtype.is_floating_point is False
            np.testing.assert_array_equal(array.numpy(), expected[name], err_msg=name)


def test_no_texts_pack_to_empty_arrays(tiny_model_dir: Path) -> None:
    packed = tokens.encode(_tokenizer(str(tiny_model_dir)), [], 32)
    assert len(packed) == 0 and packed.columns["input_ids"].shape == (0, 0)
