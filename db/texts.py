"""Text normalisation and the per-project duplicate key."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_ASCII_CONTROL = bytes(range(0x20)) + b"\x7f"


def normalise(text: str) -> str:
    """NFC, whitespace runs collapsed to one space, trimmed: what counts as 'the same text'."""
    if _is_normal(text, text.encode("utf-8", "surrogatepass")):  # a surrogate is not printable
        return text
    return _collapse(text)


def text_hash(text: str) -> str:
    """32 hex characters (BLAKE2b-128) of the normalised text."""
    return utf8_and_hash(text)[1]


def utf8_and_hash(text: str) -> tuple[bytes, str]:
    """The text's UTF-8 bytes and its `text_hash`, encoding once when the text is normal.

    Raises:
        UnicodeEncodeError: the text holds an unpaired surrogate (JSON can carry one).
    """
    data = text.encode("utf-8")
    key = data if _is_normal(text, data) else _collapse(text).encode("utf-8")
    return data, hashlib.blake2b(key, digest_size=16).hexdigest()


def _collapse(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def _is_normal(text: str, data: bytes) -> bool:
    """Whether ``normalise`` would return ``text`` (whose UTF-8 is ``data``) unchanged.

    Checked without splitting the text into words, which is most of an import's hashing time.
    The space is the only character that is both whitespace and printable
    (``tests/db/test_texts.py`` checks this over every code point), so a printable text with
    no double space and no space at either end has nothing to collapse or trim. For ASCII,
    "printable" is "no control byte". This may decline a text that is already normal (one
    with a control character, say); ``normalise`` then does the full work.
    """
    if text.isascii():
        printable = len(data.translate(None, _ASCII_CONTROL)) == len(data)
    else:
        printable = text.isprintable() and unicodedata.is_normalized("NFC", text)
    return printable and b"  " not in data and not data.startswith(b" ") and not data.endswith(b" ")


def file_stem(name: str) -> str:
    """``name`` (a project's) made safe to start a file name: runs of anything but letters,
    digits, ``_``, ``.`` and ``-`` become one ``-``."""
    return re.sub(r"[^\w.-]+", "-", name).strip("-.") or "project"
