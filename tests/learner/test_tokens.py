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


@pytest.mark.parametrize("side, split", [("right", False), ("left", False), ("right", True)])
def test_a_fast_tokenizer_is_read_through_a_copy_of_its_core_with_its_settings(
        tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, side: str, split: bool) -> None:
    tokenizer = _tokenizer(str(tiny_model_dir))
    tokenizer.truncation_side, tokenizer.split_special_tokens = side, split
    texts = ["apple [SEP] banana " * 6, "[CLS] cherry [MASK]", "", "apple " * 3]
    expected = tokenizer(texts, truncation=True, max_length=9, padding=True, return_tensors="np")
    tokenizer.backend_tokenizer.no_truncation()

    def not_called(*args: object, **kwargs: object) -> None:
        raise AssertionError("the tokenizer's Python path was called")

    monkeypatch.setattr(type(tokenizer), "__call__", not_called)
    for _ in range(2):  # the second call reuses the copy
        batch = tokens.encode(tokenizer, texts, 9).batch(np.arange(len(texts)), "cpu")
        for name, array in batch.items():
            np.testing.assert_array_equal(array.numpy(), expected[name], err_msg=name)
    assert tokenizer.backend_tokenizer.truncation is None  # its own core was left as it was


def test_a_tokenizer_without_a_rust_core_is_called_as_usual(tiny_model_dir: Path) -> None:
    tokenizer = _tokenizer(str(tiny_model_dir))
    calls = []

    class Slow:  # what a slow tokenizer offers encode: no backend_tokenizer
        model_input_names = tokenizer.model_input_names
        padding_side, pad_token_id = "right", tokenizer.pad_token_id

        def __call__(self, texts: list[str], **kwargs: object) -> object:
            calls.append(len(texts))
            return tokenizer(texts, **kwargs)

    packed = tokens.encode(Slow(), ["apple banana", "cherry"], 16)  # type: ignore[arg-type]
    assert calls == [2] and packed.lengths.tolist() == [4, 3]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_batches_cut_on_the_device_are_those_cut_on_the_host(
        tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, padding_side: str) -> None:
    monkeypatch.setattr(tokens, "ENCODE_BATCH", 3)  # packed per call, then joined
    tokenizer = _tokenizer(str(tiny_model_dir), padding_side)
    texts = [" ".join(["apple"] * n) for n in (3, 9, 1, 6, 4, 7, 2)] + [""]
    packed = tokens.encode(tokenizer, texts, 32)
    rows = np.array([4, 0, 6, 1, 1, 7, 3])
    on_host = list(packed.batches(rows, 3, "cpu"))
    resident = list(packed._resident_batches(rows, 3, "cpu"))  # what a GPU runs, here
    assert len(on_host) == len(resident) == 3
    for host, device in zip(on_host, resident):
        assert set(host) == set(device) == {"input_ids", "token_type_ids", "attention_mask"}
        for name in host:
            assert device[name].dtype == host[name].dtype and device[name].is_contiguous()
            np.testing.assert_array_equal(device[name].numpy(), host[name].numpy(), err_msg=name)
