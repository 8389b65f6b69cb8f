"""Principals file: authority from the trusted mapping only, tokens, identity resolution."""

from __future__ import annotations

import hashlib
import json

import pytest

from opx_learning.cli.environment import principal_name
from opx_learning.safety.models import AuthorityType, InvalidRequest
from opx_learning.safety.principals import (
    PrincipalsFileError,
    load_principals,
    resolve_principal,
    resolve_token,
)
from opx_learning_tests import wiring

ADMIN_ARN = "arn:aws:iam::123456789012:user/ops-admin"
TOKEN = "s3cret-token"


@pytest.fixture
def principals_file(tmp_path, opx_home, monkeypatch):
    path = tmp_path / "principals.yaml"
    path.write_text(
        "principals:\n"
        f'  "{ADMIN_ARN}":\n'
        "    authority: EMERGENCY_OVERRIDE\n"
        f'    token_sha256: "{hashlib.sha256(TOKEN.encode()).hexdigest()}"\n'
        "  alice:\n"
        "    authority: on_call_sre\n"
    )
    monkeypatch.setenv("OPX_PRINCIPALS", str(path))
    monkeypatch.delenv("OPX_PRINCIPAL", raising=False)
    return path


def test_authority_comes_from_the_file(principals_file) -> None:
    settings = wiring.settings()
    assert resolve_principal(ADMIN_ARN, settings=settings).authority is AuthorityType.EMERGENCY_OVERRIDE
    assert resolve_principal("alice", settings=settings).authority is AuthorityType.ON_CALL_SRE
    assert resolve_principal("mallory", settings=settings).authority is AuthorityType.HUMAN_OPERATOR


def test_env_and_os_user_fallbacks(principals_file, monkeypatch) -> None:
    settings = wiring.settings()
    monkeypatch.setenv("OPX_PRINCIPAL", "alice")
    # The CLI names OPX_PRINCIPAL when --principal is not given; a library call is handed the variables.
    assert resolve_principal(principal_name(None), settings=settings).principal == "alice"
    assert resolve_principal(settings=settings, env={"OPX_PRINCIPAL": "alice"}).principal == "alice"
    assert resolve_principal(principal_name("bob"), settings=settings).principal == "bob"
    monkeypatch.setenv("USER", "localuser")
    monkeypatch.setenv("LOGNAME", "localuser")
    # Without a name or variables given, nothing is read from the process environment.
    assert resolve_principal(settings=settings).principal == "localuser"
    monkeypatch.delenv("OPX_PRINCIPAL")
    assert resolve_principal(principal_name(None), settings=settings).principal == "localuser"
    with pytest.raises(InvalidRequest, match="reserved for scheduled runs"):
        resolve_principal("SYSTEM", settings=settings)


def test_aws_backend_uses_caller_identity(aws_env, monkeypatch) -> None:
    monkeypatch.setenv("OPX_BACKEND", "aws")
    monkeypatch.delenv("OPX_PRINCIPAL", raising=False)
    principal = resolve_principal(settings=wiring.settings())
    assert (
        principal.principal.startswith("arn:aws:")
        and principal.authority is AuthorityType.HUMAN_OPERATOR
    )


def test_tokens(principals_file) -> None:
    assert resolve_token(TOKEN, wiring.settings()).principal == ADMIN_ARN
    assert resolve_token(TOKEN, wiring.settings()).authority is AuthorityType.EMERGENCY_OVERRIDE
    assert resolve_token("wrong", wiring.settings()) is None and resolve_token("", wiring.settings()) is None


def test_json_file_and_no_file(tmp_path) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps({"principals": {"bob": {"authority": "EMERGENCY_OVERRIDE"}}})
    )
    assert load_principals(path).authority_of("bob") is AuthorityType.EMERGENCY_OVERRIDE
    assert load_principals(None).authority_of("bob") is AuthorityType.HUMAN_OPERATOR


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (
            "principals:\n  bob:\n    authority: SYSTEM\n",
            "authority SYSTEM is reserved",
        ),
        (
            "principals:\n  bob:\n    authority: GOD\n",
            "principal 'bob': authority: 'GOD' is not one of",
        ),
        ("principals:\n  bob: admin\n", "expected a mapping with 'authority'"),
        (
            "principals:\n  bob:\n    authority: ON_CALL_SRE\n    token_sha256: abc\n",
            "not 64 hex digits",
        ),
        (
            "principals:\n  bob:\n    authority: ON_CALL_SRE\n    admin: true\n",
            "unknown field",
        ),
        ("- just a list\n", "'principals' mapping"),
        ("principals: [unclosed\n", "not valid YAML/JSON"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, content, match) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(PrincipalsFileError, match=match):
        load_principals(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(PrincipalsFileError, match="cannot read"):
        load_principals(tmp_path / "absent.yaml")
