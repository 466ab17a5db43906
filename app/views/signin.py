"""Sign in: the only page an anonymous session sees. No open sign-up: admins add accounts."""

from __future__ import annotations

import streamlit as st

from app import ui
from db.errors import LabelwiseError
from db.models import Role
from db.users import add_user, authenticate, has_admin

settings = ui.settings()
st.title("Labelwise", anchor=False)

LOOPBACK = {"localhost", "127.0.0.1", "::1"}
first_run = not has_admin(settings)
if first_run and str(st.get_option("server.address") or "") in LOOPBACK:
    st.write("First run: create the admin account. (Shown only while no admin exists and the app "
             "listens on this machine alone; elsewhere use `python -m app user add NAME --admin`.)")
    with st.form("first_admin"):
        name = st.text_input("Admin name", max_chars=100)
        password = st.text_input("Password", type="password")
        again = st.text_input("Password again", type="password")
        if st.form_submit_button("Create admin", type="primary"):
            if password != again:
                st.error("The passwords differ.")
            else:
                try:
                    user = add_user(settings, name, password, Role.ADMIN)
                except LabelwiseError as exc:
                    st.error(ui.md_escape(str(exc)))
                else:
                    ui.sign_in(user)
                    st.rerun()
    st.stop()

if first_run:
    st.warning("No admin account yet: create one with `python -m app user add NAME --admin`.")
with st.form("signin"):
    name = st.text_input("Name", max_chars=100)
    password = st.text_input("Password", type="password")
    if st.form_submit_button("Sign in", type="primary"):
        try:
            user = authenticate(settings, name, password)
        except LabelwiseError as exc:
            st.error(ui.md_escape(str(exc)))
        else:
            ui.sign_in(user)
            st.rerun()
