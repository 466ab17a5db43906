"""Streamlit entry file: the router (``st.navigation``); pages live in ``app/views/``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="Labelwise", layout="wide")

pages = [
    st.Page(str(ROOT / "app" / "views" / "overview.py"), title="Projects", icon=":material/folder:",
            default=True),
]
st.navigation(pages).run()
