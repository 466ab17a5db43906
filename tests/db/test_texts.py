"""The duplicate key: normalisation and its fast path."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from db.texts import _is_normal, normalise, text_hash, utf8_and_hash


def _reference(text: str) -> str:
    """The definition, without the fast path."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def test_space_is_the_only_printable_whitespace() -> None:
    # The fast path relies on this: any other whitespace makes a text non-printable.
    found = [c for c in range(sys.maxunicode + 1) if chr(c).isspace() and chr(c).isprintable()]
    assert found == [0x20]


@pytest.mark.parametrize("space", [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()])
def test_every_whitespace_character_is_collapsed(space: str) -> None:
    text = f"{space}a{space}b {space}c{space}"
    assert normalise(text) == "a b c"
    assert text_hash(text) == text_hash("a b c")


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "plain words, one line.",
        " leading",
        "trailing ",
        "double  space",
        "tab\there",
        "line\nbreak",
        "crlf\r\nend",
        "bell\x07inside",
        "no\u00a0break",
        "cafe\u0301",  # decomposed: NFC composes it
        "caf\u00e9",  # already composed
        "\u212b",  # angstrom sign: NFC maps it to U+00C5
        "ideographic\u3000space",
        "zero\u200bwidth",  # not whitespace: kept
    ],
)
def test_normalise_matches_the_definition(text: str) -> None:
    assert normalise(text) == _reference(text)
    if _is_normal(text, text.encode()):  # it may decline a normal text, never the reverse
        assert _reference(text) == text
    data, digest = utf8_and_hash(text)
    assert data == text.encode("utf-8")
    assert digest == text_hash(_reference(text))


@pytest.mark.parametrize("text", ["A clean, single-line text.", "Caf\u00e9 \u00fcber \u4e2d\u6587"])
def test_fast_path_taken_for_clean_text(text: str) -> None:
    assert _is_normal(text, text.encode())


@pytest.mark.parametrize("control", [chr(c) for c in [*range(0x20), 0x7F]])
def test_fast_path_declines_any_ascii_control(control: str) -> None:
    text = f"a{control}b"
    assert not _is_normal(text, text.encode())
    assert normalise(text) == _reference(text)


def test_unpaired_surrogate_cannot_be_hashed_but_normalises() -> None:
    with pytest.raises(UnicodeEncodeError):
        utf8_and_hash("a\ud800b")
    assert normalise(" a\ud800  b ") == _reference(" a\ud800  b ") == "a\ud800 b"
