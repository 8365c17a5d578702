"""Password accounts: a user name and password standing for an identity.

CAICT's ID-SDK logs in with a user name and password (opcode 2000) rather than a key;
a node that keeps such accounts lets it in. An account acts as the identity
(``index:handle``) it is bound to, with exactly that identity's permissions, so an
account grants nothing a key holder could not be granted. Only salted scrypt hashes
are stored (:mod:`idnode.auth.passwords`).
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta, timezone

from idnode.auth.passwords import check_date_digest, check_password, hash_password
from idnode.domain import Account
from idnode.errors import AuthenticationFailed, InvalidValue, NoSuchResource
from idnode.handle.values import ValueReference
from idnode.handle.valuetypes import AdminPermission
from idnode.names import NA_PREFIX, handle_key, split_handle, validate_handle
from idnode.service.core import Caller, ServiceCore

__all__ = ["MIN_PASSWORD_LENGTH", "Accounts"]

MIN_PASSWORD_LENGTH = 10
#: China Standard Time, whose date the SNMS clients put in their digest.
_CHINA = timezone(timedelta(hours=8))
_SLACK = timedelta(minutes=10)

_MAX_NAME = 128


class Accounts:
    def __init__(self, core: ServiceCore) -> None:
        self._core = core

    def add(
        self, name: str, identity: ValueReference, password: str, *, date_digest: bool = False
    ) -> Account:
        """Create the account, or replace its identity and password. ``date_digest``
        also keeps what SNMS's ``/identity/token/v1`` login is checked against (see
        :mod:`idnode.auth.passwords`)."""
        _check_name(name)
        validate_handle(identity.handle)
        if identity.index <= 0:
            raise InvalidValue("an account acts as one key value: give INDEX:HANDLE, index > 0")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise InvalidValue(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
        stored = hash_password(password, keep_sha256=date_digest)
        account = Account(name, identity, stored, int(self._core.wall_clock()))
        self._core.storage.put_account(account)
        return account

    def remove(self, name: str) -> None:
        if not self._core.storage.delete_account(name):
            raise NoSuchResource(f"no account named {name!r}")

    def all(self) -> list[Account]:
        return self._core.storage.accounts()

    def administered_by(self, caller: Caller) -> list[Account]:
        """The accounts acting as identities under prefixes whose administrators
        ``caller`` may modify (MODIFY_ADMIN there): what a console shows it."""
        core = self._core
        if caller.identity is None:
            return []
        identity = caller.identity
        shown = []
        for account in core.storage.accounts():
            prefix, suffix = split_handle(account.identity.handle)
            if handle_key(prefix) == NA_PREFIX:
                prefix = suffix  # 0.NA/88.100.1 is administered under 88.100.1
            granted = core.authorizer.permissions(identity, core.prefix_admins(prefix))
            if AdminPermission.MODIFY_ADMIN in granted:
                shown.append(account)
        return shown

    def log_in(self, name: str, password: str, origin: str) -> Caller:
        """The caller an account's name and password make; AuthenticationFailed, the
        same for an unknown name as for a wrong password. Slow on purpose (scrypt):
        call it off the event loop."""
        account = self._core.storage.get_account(name)
        if not check_password(password, None if account is None else account.password):
            raise AuthenticationFailed("wrong user name or password")
        assert account is not None
        return Caller(account.identity, origin)

    def log_in_with_date_digest(self, name: str, digest: str, origin: str) -> Caller:
        """SNMS's ``/identity/token/v1`` login: ``digest`` is sha256(sha256(password) +
        the date in China, YYYY-MM-DD). A digest from another day is refused, so one
        seen on the wire stops working at midnight; the day before or after is also
        taken within ten minutes of midnight, for clocks that differ."""
        account = self._core.storage.get_account(name)
        now = datetime.fromtimestamp(self._core.wall_clock(), _CHINA)
        days = {now.date()} | {(now + d).date() for d in (_SLACK, -_SLACK)}
        texts = tuple(sorted(d.isoformat() for d in days))
        if account is None or not check_date_digest(digest, account.password, texts):
            raise AuthenticationFailed("wrong user name or password digest")
        return Caller(account.identity, origin)


def _check_name(name: str) -> None:
    if not name or len(name) > _MAX_NAME:
        raise InvalidValue(f"an account name has 1 to {_MAX_NAME} characters")
    if any(unicodedata.category(c).startswith(("C", "Z")) for c in name):
        raise InvalidValue("an account name has no spaces or control characters")
