"""Small helpers shared by the pages: who is signed in, which project is open, errors.

Only plain values live in ``st.session_state`` (names, ids, frozen dataclasses): never a
Session or an ORM object.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from db.engine import read_unit
from db.errors import LabelwiseError
from db.projects import ProjectInfo, find_project, list_projects
from db.settings import Settings, get_settings
from db.users import (
    SESSION_HOURS,
    Forbidden,
    User,
    end_sessions,
    get_user,
    issue_token,
    verify_token,
)
from db.users import require_admin as db_require_admin

T = TypeVar("T")

ANNOTATOR = "annotator"
SESSION_VERSION = "session_version"
"""The account's session version this session signed in under (see `db.users.end_sessions`)."""
PROJECT = "project"
PENDING_PROJECT = "pending_project"
"""A project to select in the sidebar on the next run (its widget's key cannot be set once drawn)."""


_MD_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:")


def md_escape(text: str) -> str:
    """Make untrusted text safe inside Markdown-rendering elements (st.error, st.success...).

    Every Markdown-significant character is backslash-escaped, so links, images, emphasis and
    LaTeX show as the characters typed; a line break stays one (a hard break: Markdown would
    fold the lines of a message listing bad rows into one paragraph).
    """
    escaped = "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)
    return "  \n".join(escaped.splitlines())


def duration(seconds: float) -> str:
    """``45 s``, ``12 min`` or ``1.5 h``."""
    seconds = max(seconds, 0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def settings() -> Settings:
    return get_settings()


def annotator() -> str:
    return str(st.session_state.get(ANNOTATOR, ""))


COOKIE = "labelwise_session"


def current_user() -> User | None:
    """The signed-in account as the database has it now; a disabled one is signed out, and so
    is a session its account ended (signed out elsewhere, new password: `end_sessions`).

    After a page refresh the session comes back from a signed, expiring cookie.
    """
    name = annotator()
    if not name and not st.session_state.get("_signed_out"):
        token = st.context.cookies.get(COOKIE)
        found = verify_token(settings(), token) if isinstance(token, str) and token else None
        if found:
            name, st.session_state[SESSION_VERSION] = found
            st.session_state[ANNOTATOR] = name
    user = get_user(settings(), name) if name else None
    if (user is None or not user.is_active
            or user.session_version != st.session_state.get(SESSION_VERSION)):
        st.session_state.pop(ANNOTATOR, None)
        return None
    return user


def _set_cookie(value: str, max_age: int) -> None:
    import streamlit.components.v1 as components

    # The component's iframe is same-origin, so the cookie belongs to the app's own address.
    components.html(
        "<script>document.cookie = " + json.dumps(
            f"{COOKIE}={value}; path=/; max-age={max_age}; SameSite=Strict") + ";</script>",
        height=0,
    )


RELEASE_FOCUS = "_release_focus"


def release_focus_next_run() -> None:
    """A widget callback: the next run takes the keyboard focus off the widget that has it (a
    selectbox keeps it after a choice, and the shortcut keys then type into it instead of
    answering)."""
    st.session_state[RELEASE_FOCUS] = True


def release_focus_if_asked() -> None:
    """Do what `release_focus_next_run` asked for, once."""
    if not st.session_state.pop(RELEASE_FOCUS, False):
        return
    import streamlit.components.v1 as components

    # Same-origin iframe, as for the cookie: it reaches the app's document.
    components.html("<script>window.parent.document.activeElement?.blur();</script>", height=0)


def sign_in(user: User) -> None:
    st.session_state[ANNOTATOR] = user.name
    st.session_state[SESSION_VERSION] = user.session_version
    st.session_state.pop("_signed_out", None)
    st.session_state["_set_cookie"] = issue_token(settings(), user)


def sign_out() -> None:
    """End this account's sessions everywhere (a copied cookie too), then this one's state."""
    if annotator():
        end_sessions(settings(), annotator())
    st.session_state.clear()
    st.session_state["_signed_out"] = True  # the old cookie must not sign in again
    st.session_state["_set_cookie"] = ""


def write_cookie() -> None:
    """Send a pending cookie change to the browser (after a sign-in or sign-out)."""
    value = st.session_state.pop("_set_cookie", None)
    if value is not None:
        _set_cookie(value, SESSION_HOURS * 3600 if value else 0)


def require_admin() -> User:
    """Stop the page unless the signed-in user is an active admin (checked in the database)."""
    try:
        return db_require_admin(settings(), annotator())
    except Forbidden as exc:
        st.error(str(exc))
        st.stop()
        raise


def projects() -> list[ProjectInfo]:
    with read_unit(settings()) as session:
        return list_projects(session)


def current_project() -> ProjectInfo | None:
    """The project chosen in the sidebar (re-read each run, so edits show at once)."""
    name = st.session_state.get(PROJECT)
    if not name:
        return None
    with read_unit(settings()) as session:
        return find_project(session, name)


def require_project() -> ProjectInfo:
    project = current_project()
    if project is None:
        st.info("No project yet: import a file on the Data page, or run `make run` for the demo.")
        st.stop()
    return project


def attempt(action: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run a service call; a domain error becomes `st.error` and None."""
    try:
        return action(*args, **kwargs)
    except LabelwiseError as exc:
        st.error(md_escape(str(exc)))
        return None


def flash(message: str, kind: str = "success") -> None:
    """Show a message on the next run (after a callback or st.rerun)."""
    st.session_state["_flash"] = (kind, message)


def show_flash() -> None:
    kind, message = st.session_state.pop("_flash", (None, None))
    if message:
        getattr(st, kind)(md_escape(message))
