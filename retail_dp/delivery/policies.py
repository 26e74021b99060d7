"""Who may read what: callers (API keys stored as SHA-256 digests, or signed JWTs), the groups
they belong to, and per group the members they may see, how PII is masked and which rows.

Denied by default: an unknown caller gets 401, a member no group grants is not there for the
caller (403 when asked for). A caller in several groups gets the union of what the groups
allow: every member any group grants; for a member, the lightest masking among the groups that
grant it; and the rows any group allows (a group without a row filter allows every row).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import jwt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retail_dp.delivery.semantic import Dimension, SemanticModel

MASKINGS = ("none", "partial", "hash", "redact")  # lightest first
MIN_JWT_SECRET_BYTES = 32  # HS256 wants a key at least as long as its 256-bit output
Masking = Literal["none", "partial", "hash", "redact"]


class PolicyError(ValueError):
    pass


class Unauthorized(Exception):
    """No credentials, or credentials nobody issued (HTTP 401)."""


class Forbidden(Exception):
    """A known caller asking for what no group of theirs grants (HTTP 403)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RowFilter(_Strict):
    member: str
    operator: Literal["equals", "in"]
    values: list[str | int | float | bool] = Field(min_length=1)

    def __str__(self) -> str:
        return f"{self.member} {self.operator} {self.values}"


class Group(_Strict):
    description: str = ""
    members: list[str] = Field(min_length=1)  # globs over `table.member`, e.g. "purchase.*"
    exclude: list[str] = []
    masking: dict[str, Masking] = {}  # member glob -> masking; else the model's classification
    row_filter: RowFilter | None = None


class CallerEntry(_Strict):
    name: str
    groups: list[str] = Field(min_length=1)
    api_key_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    # a demo caller (its key is published in the README): enabled only by `serve --demo`
    demo: bool = False


class JwtSettings(_Strict):
    secret_env: str = "RETAIL_DP_JWT_SECRET"
    algorithms: list[Literal["HS256", "HS384", "HS512"]] = ["HS256"]
    issuer: str | None = None
    audience: str | None = None
    groups_claim: str = "groups"
    # a token may live at most this long (exp - iat; exp - now when it has no iat)
    max_lifetime_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 60


class PolicyFile(_Strict):
    groups: dict[str, Group]
    callers: list[CallerEntry] = []
    jwt: JwtSettings = JwtSettings()


@dataclass(frozen=True)
class Caller:
    name: str
    groups: tuple[str, ...]
    via: str  # api_key | jwt


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass
class Policies:
    file: PolicyFile
    source: Path
    demo: bool = False  # whether the demo callers were enabled
    jwt_secret: str | None = None

    @classmethod
    def load(cls, path: Path, demo: bool = False, serving: bool = True) -> Policies:
        """The policy file; its demo callers only when `demo`. To serve, a JWT secret in the
        environment shorter than MIN_JWT_SECRET_BYTES is refused (PolicyError)."""
        try:
            raw = yaml.safe_load(path.read_text())
            parsed = PolicyFile.model_validate(raw)
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"{path}: {exc}") from exc
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise PolicyError(f"{path}: field {where!r}: {err['msg']}") from exc
        for caller in parsed.callers:
            unknown = set(caller.groups) - set(parsed.groups)
            if unknown:
                raise PolicyError(f"{path}: caller {caller.name!r} names unknown groups {unknown}")
        if not demo:
            kept = [c for c in parsed.callers if not c.demo]
            parsed = parsed.model_copy(update={"callers": kept})
        secret = os.environ.get(parsed.jwt.secret_env) or None
        if serving and secret is not None and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise PolicyError(
                f"${parsed.jwt.secret_env} has {len(secret.encode())} bytes; a JWT secret needs "
                f"at least {MIN_JWT_SECRET_BYTES} (e.g. `openssl rand -hex 32`)"
            )
        return cls(parsed, path, demo=demo, jwt_secret=secret)

    def check_members(self, model: SemanticModel) -> None:
        """Every glob and row filter must name something in the model, or the file is wrong."""
        names = [m.member for m in model.all_members()]
        for name, group in self.file.groups.items():
            for pattern in [*group.members, *group.exclude, *group.masking]:
                if not fnmatch.filter(names, pattern):
                    raise PolicyError(
                        f"{self.source}: group {name!r}: {pattern!r} matches no member"
                    )
            if group.row_filter:
                if not isinstance(model.member(group.row_filter.member), Dimension):
                    raise PolicyError(
                        f"{self.source}: group {name!r}: row filter on a non-dimension"
                    )

    # -- authentication ------------------------------------------------------------------

    def authenticate(self, token: str | None) -> Caller:
        if not token:
            raise Unauthorized("credentials required: Authorization: Bearer <API key or JWT>")
        if token.count(".") == 2:
            return self._from_jwt(token)
        digest = hash_key(token)
        for entry in self.file.callers:
            if hmac.compare_digest(entry.api_key_sha256, digest):
                return Caller(entry.name, tuple(entry.groups), "api_key")
        raise Unauthorized("unknown API key")

    def _from_jwt(self, token: str) -> Caller:
        settings = self.file.jwt
        if not self.jwt_secret:
            raise Unauthorized("JWTs are not accepted by this service")
        try:
            claims = jwt.decode(
                token,
                self.jwt_secret,
                algorithms=list(settings.algorithms),
                issuer=settings.issuer,
                audience=settings.audience,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("invalid token: it has expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        issued = claims.get("iat", time.time())
        if not isinstance(issued, int | float) or claims["exp"] - issued > 60 * (
            settings.max_lifetime_minutes
        ):
            raise Unauthorized(
                f"invalid token: it lives longer than {settings.max_lifetime_minutes} minutes"
            )
        groups = claims.get(settings.groups_claim) or []
        if not isinstance(groups, list):
            raise Unauthorized(f"claim {settings.groups_claim!r} must be a list")
        known = tuple(g for g in groups if isinstance(g, str) and g in self.file.groups)
        return Caller(str(claims["sub"]), known, "jwt")

    # -- authorization -------------------------------------------------------------------

    def grants(self, caller: Caller, member: str) -> list[str]:
        """The caller's groups that grant the member."""
        found = []
        for name in caller.groups:
            group = self.file.groups[name]
            if any(fnmatch.fnmatchcase(member, p) for p in group.members) and not any(
                fnmatch.fnmatchcase(member, p) for p in group.exclude
            ):
                found.append(name)
        return found

    def require(self, caller: Caller, member: str) -> None:
        if not caller.groups:
            raise Forbidden(f"caller {caller.name!r} belongs to no group with access")
        if not self.grants(caller, member):
            raise Forbidden(f"no group of caller {caller.name!r} grants {member!r}")

    def masking(self, caller: Caller, dim: Dimension) -> str:
        """The lightest masking among the caller's groups that grant the dimension."""
        levels = []
        for name in self.grants(caller, dim.member):
            group = self.file.groups[name]
            chosen = next(
                (m for p, m in group.masking.items() if fnmatch.fnmatchcase(dim.member, p)),
                None,
            )
            levels.append(chosen or (dim.masking if dim.pii else "none") or "redact")
        return min(levels, key=MASKINGS.index) if levels else "redact"

    def row_filters(self, caller: Caller, member: str | None = None) -> list[RowFilter] | None:
        """The rows the caller may see through `member` (through any member when None): None
        when a group that grants it allows every row, else the filters, any of which admits a
        row. Scoped per member, so a second group's grant of other members never widens the
        rows of a member only a restricted group grants."""
        groups = self.grants(caller, member) if member else list(caller.groups)
        filters = []
        for name in groups:
            group = self.file.groups[name]
            if group.row_filter is None:
                return None
            filters.append(group.row_filter)
        return filters


def mask(value, how: str, salt: bytes):
    """Apply a masking rule to one value (None stays None)."""
    if value is None or how == "none":
        return value
    text = str(value)
    if how == "redact":
        return "[redacted]"
    if how == "hash":
        return hashlib.sha256(salt + text.encode()).hexdigest()[:16]
    if how == "partial":
        if "@" in text:
            local, _, domain = text.partition("@")
            return f"{local[:1]}***@{domain}"
        return f"{text[:1]}***{text[-2:]}" if len(text) > 4 else "***"
    raise ValueError(f"unknown masking {how!r}")
