"""Token ids of texts, tokenised once and cut into padded batches without a loop per text.

:func:`encode` tokenises (long texts from a prefix, exactly as if whole) and packs the ids in
:class:`Tokens`: one padded array per model input, so that a batch is an array slice. On a GPU
the host's work per text is what limits scoring (the main thread collates while a background
thread tokenises), and the slice is what this module saves. Side by side on a 2-core Xeon, 8,192
BBC texts in length-sorted batches, best of 3, three alternating runs: collated from Python lists
of ids, 0.18 to 0.21 s in batches of 256 (about 23 µs a text), 0.22 s in batches of 16; from these
arrays, 0.007 to 0.010 s and 0.021 to 0.023 s (about 25x and 10x faster). Tokenising them took
3.8 to 4.1 s either way (packing the arrays costs what leaving the attention mask to the lengths
saves).

torch and transformers are imported inside functions, as in the rest of ``learner``.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

PREFIX_CHARS_PER_TOKEN = 6
"""Texts are cut to ``max_length`` times this many characters before tokenising (see encode):
BBC News needs at most 5.9 per token at 128 tokens, 4.7 on the median."""
PREFIX_GROWTH = 4
"""A prefix too short for ``max_length`` tokens is tried again this many times as long."""


@dataclass(frozen=True)
class Tokens:
    """The token ids of some texts, in the order given.

    Attributes:
        columns: Per model input but the attention mask (``input_ids``, and ``token_type_ids``
            where the model takes them), an int64 array of shape ``(n, width)``: each row
            padded on the tokenizer's padding side to the longest row.
        lengths: Real tokens per row, shape ``(n,)``; the attention mask follows from them.
        left: Rows are padded on the left.
    """

    columns: dict[str, np.ndarray]
    lengths: np.ndarray
    left: bool = False

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, idx: np.ndarray, device: str) -> dict[str, torch.Tensor]:
        """The rows ``idx`` as model inputs on ``device``, padded to the longest of them."""
        import torch

        lengths = self.lengths[idx]
        width = int(lengths.max()) if len(lengths) else 0
        full = self.columns["input_ids"].shape[1]
        cut = slice(full - width, full) if self.left else slice(0, width)
        out = {name: torch.from_numpy(column[idx, cut]).to(device)
               for name, column in self.columns.items()}
        out["attention_mask"] = torch.from_numpy(_mask(lengths, width, self.left)).to(device)
        return out

    def batches(self, rows: np.ndarray, batch_size: int, device: str
                ) -> Iterator[dict[str, torch.Tensor]]:
        """``rows`` in batches of ``batch_size``, in the order given, as :meth:`batch` cuts them.

        On an accelerator the rows' ids are copied to it once and each batch is cut there: a
        copy from the host's (pageable) memory makes the host wait until the device has run
        everything queued before it, so a copy per batch would keep the host from queueing
        the next batch while the device runs this one.
        """
        import torch

        if torch.device(device).type != "cpu":
            yield from self._resident_batches(rows, batch_size, device)
            return
        for start in range(0, len(rows), batch_size):
            yield self.batch(rows[start:start + batch_size], device)

    def _resident_batches(self, rows: np.ndarray, batch_size: int, device: str
                          ) -> Iterator[dict[str, torch.Tensor]]:
        """:meth:`batches` from one copy of the rows on ``device``, cut there."""
        import torch

        full = self.columns["input_ids"].shape[1]
        columns = {name: torch.from_numpy(np.ascontiguousarray(column[rows])).to(device)
                   for name, column in self.columns.items()}
        lengths = self.lengths[rows]
        on_device = torch.from_numpy(lengths).to(device)
        for start in range(0, len(rows), batch_size):
            stop = start + batch_size
            width = int(lengths[start:stop].max())
            cut = slice(full - width, full) if self.left else slice(0, width)
            out = {name: column[start:stop, cut].contiguous() for name, column in columns.items()}
            positions = torch.arange(width, device=device)
            real = on_device[start:stop, None]
            mask = positions >= width - real if self.left else positions < real
            out["attention_mask"] = mask.long()
            yield out


ENCODE_BATCH = 1024
"""Texts tokenised per call of the tokenizer. Its output for a call (each text's ``Encoding``,
with tokens, offsets and word ids, and the ids as Python lists) weighs about 37 KB a BBC text
until packed. On `cpu-amd-2core`: 8,192 BBC texts at once raised peak RSS by 306 MB, against
50 MB in calls of 1,024, which were no slower (median of 4 alternating runs: 1.82 s against
2.20 s); streaming 20,000 texts through ``predict_proba_stream`` (a tiny network, so the host's
path is what is timed), peak RSS rose by 110 MB against 331 MB before, at 1,765 against 1,763
texts/s (medians of 3 alternating runs)."""


def encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> Tokens:
    """The token ids (truncated to ``max_length``) of each text.

    A BERT tokenizer splits words at whitespace before anything else, so the tokens of a text
    cut at a whitespace are the first tokens of the whole text. Long texts are tokenised from
    such a prefix of about ``PREFIX_CHARS_PER_TOKEN`` characters per token wanted (news
    articles: a third of the characters); any prefix that gives fewer than ``max_length`` tokens
    is tokenised again from a prefix ``PREFIX_GROWTH`` times as long, and so on up to the whole
    text, so the result is exactly that of tokenising the whole texts. The texts go to the
    tokenizer ``ENCODE_BATCH`` at a time, each call's output packed before the next.
    """
    left, pad_id = getattr(tokenizer, "padding_side", "right") == "left", tokenizer.pad_token_id or 0
    parts = [_encode(tokenizer, texts[start:start + ENCODE_BATCH], max_length, left, pad_id)
             for start in range(0, max(len(texts), 1), ENCODE_BATCH)]
    return parts[0] if len(parts) == 1 else _concat(parts, pad_id)


def _encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, left: bool,
            pad_id: int) -> Tokens:
    if not texts:  # the tokenizer cannot take an empty list
        return _pack({"input_ids": []}, left, pad_id)
    names = [n for n in tokenizer.model_input_names if n != "attention_mask"]
    limit, todo = max_length * PREFIX_CHARS_PER_TOKEN, list(range(len(texts)))
    rows: dict[str, list[list[int]]] | None = None
    while rows is None or todo:  # the first pass tokenises every text
        batch = [texts[i] for i in todo]
        prefixes = _prefixes(tokenizer, batch, limit)
        enc = _ids(tokenizer, prefixes, max_length, names)
        if rows is None:
            names = [n for n in names if n in enc] or ["input_ids"]
            rows = {name: list(enc[name]) for name in names}
        else:
            for name, column in rows.items():
                for row, i in enumerate(todo):
                    column[i] = enc[name][row]
        todo = [i for row, i in enumerate(todo)
                if prefixes[row] is not batch[row] and len(enc["input_ids"][row]) < max_length]
        limit *= PREFIX_GROWTH
    return _pack(rows, left, pad_id)


def _ids(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int,
         names: list[str]) -> Mapping[str, list[list[int]]]:
    """Each text's ids (and token types where ``names`` asks), truncated to ``max_length``.

    A fast tokenizer's texts go straight to a copy of its Rust core (:func:`_core`), which
    gives the ids that calling the tokenizer would, without building its Python encodings:
    on `cpu-amd-2core`, 8,192 BBC prefixes in 0.07 s of Python (the GIL) instead of 0.38 s,
    and 1.5x faster in all. On a GPU the tokenising thread and the scoring thread share the
    GIL, so that share is what limits texts/s.
    """
    core = _core(tokenizer, max_length) if set(names) <= set(_CORE_COLUMNS) else None
    if core is None:
        return tokenizer(texts, truncation=True, max_length=max_length, padding=False,
                         return_attention_mask=False)
    encodings = getattr(core, "encode_batch_fast", core.encode_batch)(texts)
    return {name: [getattr(e, _CORE_COLUMNS[name]) for e in encodings]
            for name in dict.fromkeys(["input_ids", *names])}


_CORE_COLUMNS = {"input_ids": "ids", "token_type_ids": "type_ids"}
_CORES: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()
_CORES_LOCK = threading.Lock()


def _core(tokenizer: PreTrainedTokenizerBase, max_length: int) -> Any:
    """A copy of a fast tokenizer's Rust core that truncates as ``tokenizer(...,
    truncation=True, max_length=max_length)`` does, or ``None`` for a slow tokenizer.

    A copy, set once and then only read, so that threads can share it (the tokenizer's own core
    is reconfigured by each call); kept per tokenizer and setting.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    split = bool(getattr(tokenizer, "split_special_tokens", False))
    side = getattr(tokenizer, "truncation_side", "right")
    key = (max_length, side, split)
    with _CORES_LOCK:
        cores = _CORES.setdefault(tokenizer, {})
        if key not in cores:
            from tokenizers import Tokenizer

            core = Tokenizer.from_str(backend.to_str())
            core.no_padding()
            core.enable_truncation(max_length, strategy="longest_first", direction=side)
            core.encode_special_tokens = split
            cores[key] = core
        return cores[key]


def _concat(parts: list[Tokens], pad_id: int) -> Tokens:
    """Several ``Tokens`` (same inputs, same padding side) as one, padded to the widest."""
    left = parts[0].left
    width = max(part.columns["input_ids"].shape[1] for part in parts)
    columns = {}
    for name in parts[0].columns:
        fill = pad_id if name == "input_ids" else 0
        widened = []
        for part in parts:
            column = part.columns[name]
            pad = ((0, 0), (width - column.shape[1], 0) if left else (0, width - column.shape[1]))
            widened.append(np.pad(column, pad, constant_values=fill))
        columns[name] = np.concatenate(widened)
    return Tokens(columns, np.concatenate([part.lengths for part in parts]), left)


def _pack(rows: dict[str, list[list[int]]], left: bool, pad_id: int) -> Tokens:
    """Lists of ids as padded arrays; padding is ``pad_id`` in ``input_ids``, else 0."""
    lengths = np.fromiter(map(len, rows["input_ids"]), dtype=np.int64, count=len(rows["input_ids"]))
    width = int(lengths.max()) if len(lengths) else 0
    real = _mask(lengths, width, left).astype(bool)
    total = int(lengths.sum())
    columns = {}
    for name, column in rows.items():
        packed = np.full((len(lengths), width), pad_id if name == "input_ids" else 0, dtype=np.int64)
        packed[real] = np.fromiter(itertools.chain.from_iterable(column), dtype=np.int64, count=total)
        columns[name] = packed
    return Tokens(columns, lengths, left)


def _mask(lengths: np.ndarray, width: int, left: bool) -> np.ndarray:
    """1 where a row of ``width`` padded to the left or right holds a real token, as int64."""
    positions = np.arange(width)
    real = positions >= (width - lengths)[:, None] if left else positions < lengths[:, None]
    return real.astype(np.int64)


def _prefixes(tokenizer: PreTrainedTokenizerBase, texts: list[str], limit: int) -> list[str]:
    """Each text, or its start up to the last whitespace before ``limit`` characters."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if type(getattr(backend, "pre_tokenizer", None)).__name__ != "BertPreTokenizer":
        return texts  # other tokenizers may join across whitespace: no shortcut
    if getattr(tokenizer, "truncation_side", "right") == "left":
        return texts  # it keeps a text's last tokens, which no prefix holds
    out = []
    for text in texts:
        if len(text) > limit:
            cut = max(text.rfind(c, 0, limit) for c in " \n\t")
            if cut > 0:
                text = text[:cut]
        out.append(text)
    return out
