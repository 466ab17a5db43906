"""Accounts: hashed passwords, no duplicates, disabled users and roles re-checked."""

from __future__ import annotations

import pytest

from db.engine import write_unit
from db.errors import LabelwiseError
from db.models import Role
from db.projects import IMPORT_ANNOTATOR, get_or_create_annotator
from db.users import (
    AuthFailed,
    Forbidden,
    add_user,
    authenticate,
    has_admin,
    list_users,
    require_admin,
    set_active,
    set_password,
    User,
)


def test_accounts_life_cycle(any_settings):
    assert not has_admin(any_settings)
    add_user(any_settings, "root", "root-password", Role.ADMIN)
    add_user(any_settings, "ann", "ann-password")
    assert has_admin(any_settings)
    assert authenticate(any_settings, " ann ", "ann-password").role == "annotator"
    with pytest.raises(AuthFailed, match="Wrong name or password"):
        authenticate(any_settings, "ann", "root-password")
    with pytest.raises(LabelwiseError, match="already exists"):
        add_user(any_settings, "ann", "other-password")
    set_password(any_settings, "ann", "new-password")
    with pytest.raises(AuthFailed):
        authenticate(any_settings, "ann", "ann-password")
    assert authenticate(any_settings, "ann", "new-password").name == "ann"
    assert require_admin(any_settings, "root").is_admin
    with pytest.raises(Forbidden):
        require_admin(any_settings, "ann")
    set_active(any_settings, "root", False)
    with pytest.raises(Forbidden):
        require_admin(any_settings, "root")
    assert not has_admin(any_settings)
    assert [(u.name, u.is_active) for u in list_users(any_settings)] == [("ann", True),
                                                                       ("root", False)]


def test_no_login_as_the_import_pseudo_user_or_with_bad_names(settings):
    with write_unit(settings) as session:
        get_or_create_annotator(session, IMPORT_ANNOTATOR, Role.SYSTEM)
    with pytest.raises(LabelwiseError, match="reserved"):
        add_user(settings, IMPORT_ANNOTATOR, "a-long-password")
    with pytest.raises(AuthFailed):
        authenticate(settings, IMPORT_ANNOTATOR, "")
    with pytest.raises(LabelwiseError, match="printable"):
        add_user(settings, "bad\x1bname", "a-long-password")
    with pytest.raises(LabelwiseError, match="at least 8"):
        add_user(settings, "short", "1234567")


def test_annotator_known_by_name_can_get_an_account(settings):
    with write_unit(settings) as session:
        get_or_create_annotator(session, "legacy")
    add_user(settings, "legacy", "legacy-password")
    assert authenticate(settings, "legacy", "legacy-password").name == "legacy"


def test_session_tokens_are_signed_and_expire(settings):
    from db.users import issue_token, verify_token

    ann = User("ann", "annotator", session_version=3)
    token = issue_token(settings, ann)
    assert verify_token(settings, token) == ("ann", 3)
    assert (settings.data_dir / "secret.key").stat().st_mode & 0o777 == 0o600
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert verify_token(settings, forged) is None
    assert verify_token(settings, "not-a-token") is None
    assert verify_token(settings, issue_token(settings, ann, hours=-1)) is None
    other = settings.__class__(database_url=settings.database_url,
                               data_dir=settings.data_dir / "elsewhere")
    assert verify_token(other, token) is None  # another install's secret


def test_a_name_that_differs_only_in_case_is_refused(any_settings):
    add_user(any_settings, "alice", "alice-password")
    with pytest.raises(LabelwiseError, match="'alice' already exists"):
        add_user(any_settings, "Alice", "other-password")
    assert [u.name for u in list_users(any_settings)] == ["alice"]


def test_sign_out_a_new_password_or_disabling_ends_the_sessions_issued_before(any_settings):
    """A session (and its cookie) names the account's session version; each of these advances
    it, so a copied cookie stops working at once instead of living out its 12 hours."""
    from db.users import end_sessions, get_user

    add_user(any_settings, "ann", "ann-password")
    versions = [authenticate(any_settings, "ann", "ann-password").session_version]
    end_sessions(any_settings, "ann")
    versions.append(get_user(any_settings, "ann").session_version)
    set_password(any_settings, "ann", "new-password")
    versions.append(get_user(any_settings, "ann").session_version)
    set_active(any_settings, "ann", False)
    set_active(any_settings, "ann", True)  # enabling again does not bring old sessions back
    versions.append(get_user(any_settings, "ann").session_version)
    assert versions == [0, 1, 2, 3]
    assert authenticate(any_settings, "ann", "new-password").session_version == 3


def test_services_recheck_the_role_of_the_web_user(settings, tmp_path):
    import io

    from db.annotations import annotate
    from db.exporting import export
    from db.importing import import_stream
    from db.runs import cancel_run, request_training

    add_user(settings, "root", "root-password", Role.ADMIN)
    add_user(settings, "ann", "ann-password")
    report = import_stream(settings, io.BytesIO(b"one\ntwo\n"), "t.txt", "p", labels=["a", "b"],
                           actor="root")
    assert report.accepted == 2
    with pytest.raises(Forbidden):
        import_stream(settings, io.BytesIO(b"three\n"), "t.txt", "p", actor="ann")
    with pytest.raises(Forbidden):
        export(settings, "p", io.BytesIO(), "csv", actor="ann")
    with pytest.raises(Forbidden):
        request_training(settings, 1, actor="ann")
    run = request_training(settings, 1, actor="root")
    with pytest.raises(Forbidden):
        cancel_run(settings, run.id, actor="ann")
    annotate(settings, "p", 1, "ann", "a")  # annotators label
    set_active(settings, "ann", False)
    with pytest.raises(LabelwiseError, match="disabled"):
        annotate(settings, "p", 2, "ann", "a")
