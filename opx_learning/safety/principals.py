"""Who is calling and with which authority (docs/design.md#authority).

The principal comes from the authenticated identity (REST bearer token, IAM
identity, or for the CLI `--principal` / `OPX_PRINCIPAL` (read by the CLI), else the OS user on
the local backend, else the AWS caller identity). Its authority comes only from
the trusted principals file named by `OPX_PRINCIPALS` (YAML or JSON):

    principals:
      "arn:aws:iam::123456789012:user/ops-admin":
        authority: EMERGENCY_OVERRIDE
        token_sha256: "<hex SHA-256 of the REST bearer token>"
      alice:
        authority: ON_CALL_SRE

`authority` is one of HUMAN_OPERATOR, ON_CALL_SRE, EMERGENCY_OVERRIDE (SYSTEM is
reserved for scheduled runs and refused in the file); `token_sha256` is
optional. Principals not in the file (or no file) are HUMAN_OPERATOR. No
argument of this module accepts an authority from the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from opx_learning.config import Settings
from opx_learning.safety.models import SYSTEM, AuthorityType, InvalidRequest, Principal

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_cache: dict[Path, tuple[float, int, PrincipalsFile]] = {}


class PrincipalsFileError(InvalidRequest):
    """The principals file is missing or malformed; the message names the file, entry and value."""


@dataclass(frozen=True)
class PrincipalsFile:
    """Parsed principals file: principal -> authority, and token hash -> principal."""

    authorities: Mapping[str, AuthorityType]
    token_hashes: Mapping[str, str]
    path: Path | None = None

    def authority_of(self, principal: str) -> AuthorityType:
        """The granted authority; unknown principals are HUMAN_OPERATOR."""
        return self.authorities.get(principal, AuthorityType.HUMAN_OPERATOR)

    def principal(self, name: str) -> Principal:
        """A Principal carrying the authority this file grants `name`."""
        return Principal(name, self.authority_of(name))

    def resolve_token(self, token: str) -> Principal | None:
        """The principal whose `token_sha256` matches `token` (constant-time compare), or None."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        match = None
        for expected, name in self.token_hashes.items():
            if hmac.compare_digest(expected, digest):
                match = name
        return self.principal(match) if match is not None else None


EMPTY = PrincipalsFile({}, {})


def parse_principals(data: Any, source: str = "principals file") -> PrincipalsFile:
    """Validate the decoded file content.

    Raises:
        PrincipalsFileError: wrong shape, unknown or reserved authority, bad token hash.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("principals", {}), Mapping):
        raise PrincipalsFileError(f"{source}: expected a mapping with a 'principals' mapping at the top")
    authorities: dict[str, AuthorityType] = {}
    hashes: dict[str, str] = {}
    for name, entry in (data.get("principals") or {}).items():
        where = f"{source}: principal {name!r}"
        if not isinstance(name, str) or not name.strip():
            raise PrincipalsFileError(f"{where}: name must be a non-empty string")
        if not isinstance(entry, Mapping) or "authority" not in entry:
            raise PrincipalsFileError(f"{where}: expected a mapping with 'authority'")
        unknown = set(entry) - {"authority", "token_sha256"}
        if unknown:
            raise PrincipalsFileError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        try:
            authority = AuthorityType.parse(entry["authority"], "authority")
        except InvalidRequest as exc:
            raise PrincipalsFileError(f"{where}: {exc}") from None
        if authority is AuthorityType.SYSTEM:
            raise PrincipalsFileError(f"{where}: authority SYSTEM is reserved for scheduled runs")
        authorities[name] = authority
        token_hash = entry.get("token_sha256")
        if token_hash is not None:
            token_hash = str(token_hash).strip().lower()
            if not _HEX64.match(token_hash):
                raise PrincipalsFileError(f"{where}: token_sha256 {entry['token_sha256']!r} is not 64 hex digits")
            if token_hash in hashes:
                raise PrincipalsFileError(f"{where}: token_sha256 already used by {hashes[token_hash]!r}")
            hashes[token_hash] = name
    return PrincipalsFile(authorities, hashes)


def load_principals(path: Path | str | None) -> PrincipalsFile:
    """Read (and cache by modification time) the principals file; None means no file.

    Raises:
        PrincipalsFileError: unreadable or malformed file.
    """
    if path is None:
        return EMPTY
    file = Path(path).expanduser()
    try:
        stat = file.stat()
        cached = _cache.get(file)
        if cached and cached[:2] == (stat.st_mtime, stat.st_size):
            return cached[2]
        text = file.read_text()
    except OSError as exc:
        raise PrincipalsFileError(f"OPX_PRINCIPALS: cannot read {file}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise PrincipalsFileError(f"OPX_PRINCIPALS: {file} is not valid YAML/JSON: {exc}") from None
    parsed = parse_principals(data if data is not None else {}, str(file))
    parsed = PrincipalsFile(parsed.authorities, parsed.token_hashes, file)
    _cache[file] = (stat.st_mtime, stat.st_size, parsed)
    return parsed


def principals_for(settings: Settings) -> PrincipalsFile:
    """The principals file named by the settings (`OPX_PRINCIPALS`)."""
    return load_principals(settings.principals_file)


def caller_identity(settings: Settings) -> str:
    """The AWS caller identity ARN (STS), used as principal on the aws backend.

    Raises:
        InvalidRequest: STS cannot tell who is calling.
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return boto3.session.Session().client("sts", region_name=settings.region).get_caller_identity()["Arn"]
    except (BotoCoreError, ClientError, KeyError) as exc:
        raise InvalidRequest(f"principal: cannot determine the AWS caller identity ({exc}); pass --principal") from None


def resolve_principal(
    name: str | None = None, *, settings: Settings | None = None, env: Mapping[str, str] | None = None
) -> Principal:
    """The calling principal: `name` (the CLI passes `--principal`, else `OPX_PRINCIPAL`), else `OPX_PRINCIPAL`
    of `env` when given, else the OS user (local backend) or the AWS caller identity (aws backend).

    Authority always comes from the principals file; the reserved name of the
    scheduler (`system`) cannot be claimed.

    Args:
        name: the principal's name, if the caller knows it.
        settings: the backend and the principals file. None is accepted only from callers in
            `opx_learning/app/` that do not pass them yet (they get the environment's settings).
        env: variables to take `OPX_PRINCIPAL` from when `name` is None (nothing is read otherwise).

    Raises:
        InvalidRequest: empty or reserved name, unreadable principals file.
    """
    from opx_learning.backends import backend_for, settings_or_environment

    settings = settings_or_environment(settings)
    chosen = name
    if chosen is None and env is not None:
        chosen = env.get("OPX_PRINCIPAL") or None
    if chosen is None:
        chosen = backend_for(settings).caller_identity()
    chosen = str(chosen).strip()
    if not chosen:
        raise InvalidRequest("principal: must not be empty")
    if chosen.lower() == SYSTEM.principal:
        raise InvalidRequest(f"principal: {chosen!r} is reserved for scheduled runs")
    return principals_for(settings).principal(chosen)


def resolve_token(token: str, settings: Settings) -> Principal | None:
    """The principal a REST bearer token authenticates (via `token_sha256`), or None."""
    if not token:
        return None
    return principals_for(settings).resolve_token(token)
