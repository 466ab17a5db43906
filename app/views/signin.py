"""Sign in: the only page before a name is given (accounts and passwords come with teams)."""

from __future__ import annotations

import streamlit as st

from app import ui

st.title("Labelwise")
st.write("Label texts with a model in the loop.")
with st.form("signin"):
    name = st.text_input("Your name", max_chars=100, help="Your labels are recorded under it.")
    if st.form_submit_button("Start labelling", type="primary"):
        if not name.strip():
            st.error("Please give a name.")
        elif any(not ch.isprintable() for ch in name):
            st.error("The name contains control characters.")
        else:
            st.session_state[ui.ANNOTATOR] = name.strip()
            st.rerun()
