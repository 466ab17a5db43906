"""Streamlit entry file: the router and sign-in gate (``st.navigation``); pages in ``app/views/``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import ui  # noqa: E402

st.set_page_config(page_title="Labelwise", layout="wide")
VIEWS = ROOT / "app" / "views"


def page(name: str, title: str, icon: str, default: bool = False) -> st.Page:
    return st.Page(str(VIEWS / f"{name}.py"), title=title, icon=icon, default=default,
                   url_path=name)


user = ui.current_user()
ui.write_cookie()
if user is None:
    st.navigation([page("signin", "Sign in", ":material/login:", default=True)]).run()
    st.stop()

with st.sidebar:
    names = [p.name for p in ui.projects()]
    if names:
        if st.session_state.get(ui.PENDING_PROJECT) in names:
            st.session_state[ui.PROJECT] = st.session_state.pop(ui.PENDING_PROJECT)
        if st.session_state.get(ui.PROJECT) not in names:  # a new session: the address's
            in_url = st.query_params.get("project")
            st.session_state[ui.PROJECT] = in_url if in_url in names else names[0]
        st.selectbox("Project", names, key=ui.PROJECT, on_change=ui.release_focus_next_run)
        ui.release_focus_if_asked()  # else the keys 1-9 type into the box instead of answering
        # in the address, so a refresh, a bookmark or a shared link opens the same project
        if st.query_params.get("project") != st.session_state[ui.PROJECT]:
            st.query_params["project"] = st.session_state[ui.PROJECT]
    st.caption(f"Signed in as {ui.md_escape(user.name)} ({user.role})")
    if st.button("Sign out", key="signout",
                 help="Signs you out everywhere: other tabs and devices, and any copy of the "
                      "session cookie."):
        ui.sign_out()
        st.rerun()

pages = [page("annotate", "Annotate", ":material/edit:", default=True)]
if user.is_admin:  # the role decides the page list; admin pages check it again themselves
    pages += [
        page("data", "Data", ":material/table:"),
        page("model", "Model", ":material/monitoring:"),
        page("export", "Export", ":material/download:"),
        page("team", "Team", ":material/diversity_3:"),
        page("settings", "Settings", ":material/settings:"),
        page("users", "Users", ":material/group:"),
    ]
st.navigation(pages).run()
