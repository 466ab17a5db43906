"""Text normalisation and the per-project duplicate key."""

from __future__ import annotations

import hashlib
import unicodedata


def normalise(text: str) -> str:
    """NFC, whitespace runs collapsed to one space, trimmed: what counts as 'the same text'."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_hash(text: str) -> str:
    """32 hex characters (BLAKE2b-128) of the normalised text."""
    return hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=16).hexdigest()
