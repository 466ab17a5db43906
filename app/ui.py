"""Small helpers shared by the pages: who is signed in, which project is open, errors.

Only plain values live in ``st.session_state`` (names, ids, frozen dataclasses): never a
Session or an ORM object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from db.engine import read_unit
from db.errors import LabelwiseError
from db.projects import ProjectInfo, find_project, list_projects
from db.settings import Settings, get_settings
from db.users import Forbidden, User, get_user
from db.users import require_admin as db_require_admin

T = TypeVar("T")

ANNOTATOR = "annotator"
PROJECT = "project"


_MD_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:")


def md_escape(text: str) -> str:
    """Make untrusted text safe inside Markdown-rendering elements (st.error, st.success...).

    Every Markdown-significant character is backslash-escaped, so links, images, emphasis and
    LaTeX show as the characters typed.
    """
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def settings() -> Settings:
    return get_settings()


def annotator() -> str:
    return str(st.session_state.get(ANNOTATOR, ""))


def current_user() -> User | None:
    """The signed-in account as the database has it now; a disabled one is signed out."""
    name = annotator()
    user = get_user(settings(), name) if name else None
    if user is None or not user.is_active:
        st.session_state.pop(ANNOTATOR, None)
        return None
    return user


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
