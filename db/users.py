"""Accounts: annotators and admins with argon2-hashed passwords. No open sign-up."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from db.engine import read_unit, write_unit
from db.errors import LabelwiseError, NotFound
from db.models import Annotator, Lease, Role
from db.settings import Settings

MIN_PASSWORD = 8
LOGIN_ROLES = (Role.ADMIN.value, Role.ANNOTATOR.value)


class AuthFailed(LabelwiseError):
    """Wrong name or password, or a disabled account (the message does not say which)."""


class Forbidden(LabelwiseError):
    pass


@dataclass(frozen=True)
class User:
    name: str
    role: str
    is_active: bool = True
    session_version: int = 0
    """Sessions issued under another version are over (see `end_sessions`)."""

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value


def _hasher():  # type: ignore[no-untyped-def]
    from argon2 import PasswordHasher

    return PasswordHasher()


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100 or any(not ch.isprintable() for ch in name):
        raise LabelwiseError("A user name is 1 to 100 printable characters.")
    return name


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise LabelwiseError(f"A password needs at least {MIN_PASSWORD} characters.")


def add_user(settings: Settings, name: str, password: str, role: Role = Role.ANNOTATOR) -> User:
    """Create an account (or give a password to an annotator known only by name)."""
    name = _check_name(name)
    _check_password(password)
    if role.value not in LOGIN_ROLES:
        raise LabelwiseError(f"Accounts are {' or '.join(LOGIN_ROLES)}.")
    digest = _hasher().hash(password)
    with write_unit(settings) as session:
        user = session.scalar(select(Annotator).where(Annotator.name == name))
        if user is not None and user.password_hash is not None:
            raise LabelwiseError(f"A user named {name!r} already exists.")
        if user is not None and user.role not in LOGIN_ROLES:
            raise LabelwiseError(f"{name!r} is reserved.")
        twin = session.scalar(select(Annotator.name).where(
            func.lower(Annotator.name) == name.lower(), Annotator.name != name,
            Annotator.password_hash.is_not(None)))
        if twin is not None:  # "Alice" beside "alice": one person, two accounts, split labels
            raise LabelwiseError(f"A user named {twin!r} already exists (names differ only "
                                 "in case).")
        if user is None:
            user = Annotator(name=name)
            session.add(user)
        user.role, user.password_hash, user.is_active = role.value, digest, True
        session.flush()
        return User(name, role.value, True, user.session_version)


def authenticate(settings: Settings, name: str, password: str) -> User:
    """The user if the name and password match an active account; else `AuthFailed`."""
    with read_unit(settings) as session:
        user = session.scalar(select(Annotator).where(Annotator.name == name.strip()))
        found = None if user is None else (
            user.password_hash, user.role, user.is_active, user.session_version)
    from argon2.exceptions import VerificationError

    hasher = _hasher()
    if found is None or found[0] is None:
        # Spend the time of a real check, so response times do not tell which names exist.
        try:
            hasher.verify(hasher.hash("labelwise-dummy"), password)
        except VerificationError:
            pass
        raise AuthFailed("Wrong name or password.")
    digest, role, active, version = found
    try:
        hasher.verify(digest, password)
    except VerificationError:
        raise AuthFailed("Wrong name or password.") from None
    if not active:
        raise AuthFailed("This account is disabled; ask an admin.")
    return User(name.strip(), role, True, version)


def _account(session: Session, name: str) -> Annotator:
    user = session.scalar(select(Annotator).where(Annotator.name == name.strip()))
    if user is None or user.role not in LOGIN_ROLES:
        raise NotFound(f"No user named {name!r}.")
    return user


def set_active(settings: Settings, name: str, active: bool) -> None:
    """Enable or disable an account; disabling ends its sessions (a re-enabled account signs
    in again) and gives back the texts it holds, so others are served them at once."""
    with write_unit(settings) as session:
        user = _account(session, name)
        user.is_active = active
        if not active:
            user.session_version += 1
            session.execute(delete(Lease).where(Lease.annotator_id == user.id))


def set_password(settings: Settings, name: str, password: str) -> None:
    """Give an account a new password; every session signed in with the old one ends."""
    _check_password(password)
    digest = _hasher().hash(password)
    with write_unit(settings) as session:
        user = _account(session, name)
        user.password_hash = digest
        user.session_version += 1


def end_sessions(settings: Settings, name: str) -> None:
    """Sign an account out everywhere: every session and session cookie issued so far ends."""
    with write_unit(settings) as session:
        session.execute(update(Annotator).where(Annotator.name == name.strip())
                        .values(session_version=Annotator.session_version + 1))


def list_users(settings: Settings) -> list[User]:
    with read_unit(settings) as session:
        rows = session.execute(
            select(Annotator.name, Annotator.role, Annotator.is_active)
            .where(Annotator.role.in_(LOGIN_ROLES), Annotator.password_hash.is_not(None))
            .order_by(Annotator.name)
        ).all()
    return [User(*row) for row in rows]


def has_admin(settings: Settings) -> bool:
    with read_unit(settings) as session:
        return bool(session.scalar(
            select(func.count()).select_from(Annotator).where(
                Annotator.role == Role.ADMIN.value, Annotator.password_hash.is_not(None),
                Annotator.is_active.is_(True))
        ))


def get_user(settings: Settings, name: str) -> User | None:
    """The account as it is now (a disabled or demoted user loses access on the next page)."""
    with read_unit(settings) as session:
        row = session.execute(
            select(Annotator.name, Annotator.role, Annotator.is_active, Annotator.session_version)
            .where(Annotator.name == name, Annotator.password_hash.is_not(None))
        ).first()
    return None if row is None else User(*row)


SESSION_HOURS = 12


def _secret(settings: Settings) -> bytes:
    """This install's signing key, made on first use (never committed, never shared)."""
    import os
    import secrets

    path = settings.data_dir / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def issue_token(settings: Settings, user: User, hours: float = SESSION_HOURS) -> str:
    """A signed session token for ``user`` that expires (kept in a cookie by the UI); it is
    good while the account's session version stays the one it names."""
    import base64
    import hashlib
    import hmac
    import time

    expires = int(time.time() + hours * 3600)
    payload = f"{user.name}\n{user.session_version}\n{expires}".encode()
    mac = hmac.new(_secret(settings), payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(payload + b"\n" + mac).decode().rstrip("=")


def verify_token(settings: Settings, token: str) -> tuple[str, int] | None:
    """The user name and session version a valid, unexpired token was issued for, else None
    (the caller compares the version with the account's: `User.session_version`)."""
    import base64
    import binascii
    import hashlib
    import hmac
    import time

    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        name, version, expires, mac = raw.split(b"\n", 3)
        payload = b"\n".join((name, version, expires))
        good = hmac.new(_secret(settings), payload, hashlib.sha256).digest()
        if hmac.compare_digest(mac, good) and int(expires) > time.time():
            return name.decode(), int(version)
    except (ValueError, binascii.Error):
        pass
    return None


def require_admin(settings: Settings, name: str) -> User:
    """Re-check, in the service layer, that ``name`` is an active admin."""
    user = get_user(settings, name)
    if user is None or not user.is_active or not user.is_admin:
        raise Forbidden("Only an admin may do this.")
    return user
