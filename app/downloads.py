"""Downloads of files built on the server (a model's zip, a predictions file), in two clicks.

Not Streamlit's deferred download (a callable as the button's ``data``), which builds the file
on the click: that file is held by no session, so the server deletes it after the next two
script runs of any session (this page's polling, another user's key press), and a browser that
fetches it after them gets a 404 and no file. On a server where annotators are labelling, that
is a fraction of a second. Measured with another session polling every 0.1 s: of 5 clicks on
a deferred download of 1 KB, 1 got a 404 with the browser fetching at once, and all 5 with the
fetch delayed by 0.3 s (``tests/app/test_downloads.py`` delays it by 1 s). The Model page's own
polling (every 2 s) is the likely cause of a click in the browser test that brought no file,
once, with the whole suite loading the machine.

Here the file is built first (`prepared_download`'s "Prepare" button, or the Export page's
form), and "Download" (`file_download`) then serves it as this session's own file, which the
server keeps for as long as the session shows the button.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import timedelta

import streamlit as st

from app.ui import md_escape


@st.cache_resource(max_entries=2, ttl=timedelta(minutes=10), show_spinner=False)
def _built(ident: Hashable, _build: Callable[[], bytes]) -> bytes:
    """One copy of each prepared file, shared by the sessions that ask for it (immutable
    bytes: thread-safe); at most two held, each for 10 minutes (a session showing its Download
    button keeps its own reference, and builds it again after that on its next full run)."""
    return _build()


def file_download(label: str, build: Callable[[], bytes], ident: Hashable, *, key: str,
                  file_name: str, mime: str, help: str | None = None) -> bool:
    """A "Download LABEL · size" button serving ``build()``, built once per ``ident`` and
    shared; False, with an error shown, when it could not be built.

    Args:
        label: what the button names, e.g. ``model v2 (zip)``.
        build: makes the file's bytes.
        ident: what the file is, e.g. its path and modification time.
        key: the button's key, unique on the page.
        file_name, mime, help: as ``st.download_button`` takes them.
    """
    try:
        with st.spinner(f"Preparing {label}…"):
            data = _built(ident, build)
    except OSError as exc:  # removed or unreadable since the page showed it
        st.error(md_escape(f"Could not prepare {label}: {exc}"))
        return False
    st.download_button(f"Download {label} · {_size(len(data))}", data, file_name=file_name,
                       mime=mime, type="primary", key=key, help=help, on_click="ignore")
    return True


def prepared_download(label: str, build: Callable[[], bytes], ident: Hashable, *, key: str,
                      file_name: str, mime: str, help: str | None = None) -> None:
    """A "Prepare LABEL" button, and once pressed the `file_download` of ``build()``.

    A new ``ident`` (a new model version, a rewritten file) asks for "Prepare" again; the
    prepared one is kept in the session under ``key``. Arguments as for `file_download`.
    """
    if st.session_state.get(key) == ident:
        if file_download(label, build, ident, key=f"{key}-file", file_name=file_name, mime=mime,
                         help=help):
            return
        del st.session_state[key]
    st.button(f"Prepare {label}", key=f"{key}-prepare", help=help,
              on_click=st.session_state.__setitem__, args=(key, ident))


def _size(n: int) -> str:
    """``512 bytes``, ``12.3 KB`` or ``85.1 MB``."""
    if n < 1000:
        return f"{n} bytes"
    return f"{n / 1e3:,.1f} KB" if n < 1e6 else f"{n / 1e6:,.1f} MB"
