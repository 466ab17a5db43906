"""Users (admins only): add accounts, disable or enable them, reset passwords."""

from __future__ import annotations

import streamlit as st

from app import ui
from db.errors import LabelwiseError
from db.models import Role
from db.users import add_user, list_users, set_active, set_password

settings = ui.settings()
me = ui.require_admin()
st.title("Users", anchor=False)
ui.show_flash()

users = list_users(settings)
st.dataframe([{"name": u.name, "role": u.role, "active": u.is_active} for u in users],
             hide_index=True)


def act(action, *args, done: str) -> None:  # type: ignore[no-untyped-def]
    try:
        ui.require_admin()  # again at the moment of acting
        action(settings, *args)
    except LabelwiseError as exc:
        st.error(ui.md_escape(str(exc)))
    else:
        ui.flash(done)
        st.rerun()


with st.form("add_user"):
    st.write("Add a user")
    c1, c2, c3 = st.columns(3)
    name = c1.text_input("Name", max_chars=100)
    password = c2.text_input("Password", type="password")
    role = c3.selectbox("Role", [Role.ANNOTATOR.value, Role.ADMIN.value])
    if st.form_submit_button("Add", type="primary"):
        act(add_user, name, password, Role(role), done="User added.")

others = [u.name for u in users if u.name != me.name]
if others:
    with st.form("change_user"):
        st.write("Change a user")
        who = st.selectbox("User", others)
        new_password = st.text_input("New password (leave empty to keep)", type="password")
        c1, c2, c3 = st.columns(3)
        if c1.form_submit_button("Disable"):
            act(set_active, who, False, done="Disabled: they are signed out on their next click, "
                "and the texts they held go back to the queue.")
        if c2.form_submit_button("Enable"):
            act(set_active, who, True, done="Enabled.")
        if c3.form_submit_button("Set password"):
            if not new_password:
                st.error("Type the new password first.")
            else:
                act(set_password, who, new_password,
                    done="Password changed: their sessions end on their next click.")
