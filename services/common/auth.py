"""Callers and roles: API keys or bearer tokens in metadata, mapped to roles."""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib

from services.common.config import ApiKey
from services.common.errors import PermissionDenied, Unauthenticated

OPERATOR = "operator"
APPROVER = "approver"
ADMIN = "admin"
SERVICE = "service"
ROLES = frozenset({OPERATOR, APPROVER, ADMIN, SERVICE})

# Shorthands for the role sets most RPCs declare. Admin may call every RPC.
READERS = frozenset({OPERATOR, APPROVER, ADMIN, SERVICE})
WRITERS = frozenset({OPERATOR, ADMIN, SERVICE})


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: the subject written to audit logs and the roles held."""

    subject: str
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        return role in self.roles


ANONYMOUS = Principal("anonymous", ROLES)

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "principal", default=None
)


def current_principal() -> Principal:
    """The caller of the RPC being handled (set by the server's call pipeline)."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("no caller in this context")
    return principal


def set_principal(principal: Principal | None) -> contextvars.Token:
    return _principal.set(principal)


def reset_principal(token: contextvars.Token) -> None:
    _principal.reset(token)


def credential_from_metadata(metadata) -> str | None:
    """The presented key: ``authorization: Bearer <key>`` or ``x-api-key: <key>``."""
    for key, value in metadata or ():
        if key == "authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
        if key == "x-api-key":
            return value.strip()
    return None


def authenticate(metadata, api_keys: dict[str, ApiKey], allow_anonymous: bool) -> Principal:
    credential = credential_from_metadata(metadata)
    if credential is None:
        if allow_anonymous:
            return ANONYMOUS
        raise Unauthenticated("missing credential: send 'authorization: Bearer <key>'")
    found = _by_digest(api_keys).get(hashlib.sha256(credential.encode()).digest())
    if found is None:
        raise Unauthenticated("unknown credential")
    return found


# Keys are looked up by their SHA-256 digest: the lookup's timing depends on the digest of
# what was presented, never on how many leading characters it shares with a real key, and
# one hash replaces a constant-time comparison with every configured key.
_DIGESTS: tuple[dict[str, ApiKey], dict[bytes, Principal]] | None = None


def _by_digest(api_keys: dict[str, ApiKey]) -> dict[bytes, Principal]:
    global _DIGESTS
    cached = _DIGESTS
    if cached is not None and cached[0] is api_keys:
        return cached[1]
    table = {hashlib.sha256(key.encode()).digest(): Principal(entry.subject, entry.roles)
             for key, entry in api_keys.items()}
    _DIGESTS = (api_keys, table)
    return table


def authorize(principal: Principal, allowed: frozenset[str], method: str) -> None:
    if ADMIN in principal.roles or principal.roles & allowed:
        return
    raise PermissionDenied(
        f"{method} needs one of the roles {sorted(allowed | {ADMIN})}; caller has {sorted(principal.roles)}"
    )
