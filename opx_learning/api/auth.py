"""Who is calling the REST API: a bearer token, or an identity header set by a trusted gateway (docs/design.md#authority).

* `Authorization: Bearer <token>`: the principal whose `token_sha256` in the principals file
  (`OPX_PRINCIPALS`) is the SHA-256 of the token.
* Behind API Gateway with IAM auth (the runbook's `Authorization: AWS4-HMAC-SHA256 ...`), the
  gateway verifies the signature; this server cannot. Setting `OPX_TRUSTED_IDENTITY_HEADER`
  (e.g. `X-Amzn-Iam-Arn`) makes the server take the caller's identity from that header, which
  wins over a bearer token. Enable it only behind a gateway that sets the header itself and
  strips it from client requests: anyone who can reach the server directly could claim any
  identity with it. Without that setting a SigV4 request is answered 401 with this explanation.

Authority always comes from the principals file (unknown principals are HUMAN_OPERATOR); no
header or body field can raise it. A credential header (the trusted identity header or
`Authorization`) sent more than once is refused (401): which copy the gateway set is unknowable.
"""

from __future__ import annotations

from collections.abc import Mapping

from opx_learning.config import Settings
from opx_learning.safety.models import SYSTEM, Principal
from opx_learning.safety.principals import principals_for, resolve_token

TRUSTED_HEADER_ENV = "OPX_TRUSTED_IDENTITY_HEADER"
_HOW = (
    "send `Authorization: Bearer <token>` with a token whose SHA-256 is the principal's token_sha256 in the "
    "principals file (OPX_PRINCIPALS)"
)


class Unauthenticated(Exception):
    """The request carries no usable credentials; the message says how to authenticate."""


def authenticate(headers: Mapping[str, str], settings: Settings, trusted_header: str | None = None) -> Principal:
    """The calling principal, with its authority from the principals file.

    Args:
        headers: request headers (case-insensitive mapping).
        settings: backend settings naming the principals file.
        trusted_header: identity header set by a trusted gateway (None: not honoured).

    Raises:
        Unauthenticated: missing, unknown, unsupported or repeated credentials.
        PrincipalsFileError: the principals file is unreadable or malformed.
    """
    if trusted_header:
        identity = _single(headers, trusted_header).strip()
        if identity:
            return _principal(identity, settings, f"{trusted_header} header")
    authorization = _single(headers, "Authorization").strip()
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        principal = resolve_token(credentials.strip(), settings)
        if principal is None:
            raise Unauthenticated("the bearer token matches no principal's token_sha256 in the principals file")
        return _principal(principal.principal, settings, "bearer token")
    if scheme.upper().startswith("AWS4-HMAC-"):
        gateway = (
            f"the gateway's {trusted_header} header is missing"
            if trusted_header
            else f"set {TRUSTED_HEADER_ENV} to the identity header your gateway sets (only behind such a gateway)"
        )
        raise Unauthenticated(
            f"AWS SigV4 signatures are verified by API Gateway (IAM auth), not by this server: {gateway}; "
            f"or {_HOW}"
        )
    if not authorization:
        raise Unauthenticated(f"missing credentials: {_HOW}")
    raise Unauthenticated(f"unsupported Authorization scheme {scheme!r}: {_HOW}")


def _single(headers: Mapping[str, str], name: str) -> str:
    """The one value of a credential header ("" when absent); sent more than once, the request is refused."""
    getlist = getattr(headers, "getlist", None)
    values = list(getlist(name)) if getlist is not None else [headers.get(name) or ""]
    if len(values) > 1:
        # Which copy a gateway or proxy set is unknowable, so neither identity is taken.
        raise Unauthenticated(f"{name} header: sent {len(values)} times; send it exactly once")
    return values[0] if values else ""


def _principal(name: str, settings: Settings, source: str) -> Principal:
    if name.lower() == SYSTEM.principal:
        raise Unauthenticated(f"{source}: {name!r} is reserved for scheduled runs")
    return principals_for(settings).principal(name)
