"""Safety state initialisation: lost state fails closed, re-initialisation, reason bounds, completed records."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import boto3
import pytest

from opx_learning.config import get_settings
from opx_learning.safety.models import (
    AuditStatus,
    InsufficientAuthority,
    InvalidRequest,
    KillSwitchUnavailable,
)
from opx_learning.safety.state import (
    ALREADY_INITIALISED,
    INITIALISED,
    REINITIALISED,
    initialise,
)
from opx_learning_tests.safety.conftest import ADMIN, OPERATOR


def _lose_state(backend, how: str) -> None:
    if backend.name == "sqlite":
        path = Path(backend.spec[1])
        if how == "truncate":
            path.write_bytes(b"")
        else:
            path.unlink()
    else:
        boto3.client("dynamodb").delete_item(
            TableName=get_settings().config_table,
            Key={"PK": {"S": "CONFIG#KILL_SWITCH"}, "SK": {"S": "METADATA"}},
        )


@pytest.mark.parametrize("how", ["truncate", "delete"])
def test_lost_state_after_disable_fails_closed(backend, how) -> None:
    guard = backend.guard()
    guard.kill_switch.disable(ADMIN, "incident")
    _lose_state(backend, how)

    with pytest.raises(KillSwitchUnavailable, match=r"opx-learning init --force"):
        guard.kill_switch.status()
    attempt = guard.begin("CALIBRATION", "MANUAL", OPERATOR, {"start_date": "2026-01-01", "end_date": "2026-02-01"})
    assert not attempt.allowed and attempt.skip_reason == "KILL_SWITCH_UNAVAILABLE"
    assert ("P1", "KILL_SWITCH_UNAVAILABLE") in [(severity, alarm) for severity, alarm, _ in backend.alerts]
    if backend.name == "sqlite":
        path = Path(backend.spec[1])
        # Reading must not bring back an empty database that would read as "enabled".
        assert (path.stat().st_size == 0) if how == "truncate" else not path.exists()
    else:
        assert backend.audit.get(attempt.audit_id).results["skip_reason"] == "KILL_SWITCH_UNAVAILABLE"


def test_never_initialised_store_says_how_to_initialise(tmp_path: Path) -> None:
    from opx_learning.safety.sqlite_backend import open_sqlite

    _, kill_switch, _ = open_sqlite(tmp_path / "state.db")
    with pytest.raises(KillSwitchUnavailable, match=r"does not exist; run `opx-learning init`"):
        kill_switch.read()
    assert not (tmp_path / "state.db").exists()


def test_reinitialise_needs_emergency_override_and_is_audited(backend) -> None:
    settings = get_settings()
    backend.guard().kill_switch.disable(ADMIN, "incident")

    with pytest.raises(InsufficientAuthority, match="requires EMERGENCY_OVERRIDE") as refused:
        initialise(settings, OPERATOR, force=True)
    record = backend.audit.get(refused.value.audit_id)
    assert (record.operation_type, record.status) == ("KILL_SWITCH_ENABLE", AuditStatus.SKIPPED)
    assert record.results["skip_reason"] == "INSUFFICIENT_AUTHORITY" and record.parameters["action"] == "REINITIALISE"
    assert backend.guard().kill_switch.status().active

    unchanged = initialise(settings, ADMIN)
    assert unchanged.status == ALREADY_INITIALISED and unchanged.state.active

    done = initialise(settings, ADMIN, force=True)
    assert done.status == REINITIALISED and done.store == settings.store_description
    assert backend.guard().kill_switch.status().enabled
    record = backend.audit.get(done.audit_id)
    assert (record.status, record.triggered_by) == (AuditStatus.SUCCESS, ADMIN)
    assert record.results["previous_state"]["active"] is True


def test_reinitialise_a_truncated_database_moves_it_aside(backend) -> None:
    if backend.name != "sqlite":
        pytest.skip("a database file exists only on the local backend")
    path = Path(backend.spec[1])
    path.write_bytes(b"not a database, but evidence")
    with pytest.raises(KillSwitchUnavailable):
        initialise(get_settings(), ADMIN)
    done = initialise(get_settings(), ADMIN, force=True)
    assert done.status == REINITIALISED and len(done.moved_aside) == 1
    assert Path(done.moved_aside[0]).read_bytes() == b"not a database, but evidence"
    assert backend.guard().kill_switch.status().enabled
    assert backend.audit.get(done.audit_id).status is AuditStatus.SUCCESS


def test_first_initialisation_needs_no_authority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPX_HOME", str(tmp_path / "fresh"))
    monkeypatch.setenv("OPX_BACKEND", "local")
    result = initialise(get_settings(), OPERATOR)
    assert result.status == INITIALISED and result.state.enabled
    assert (tmp_path / "fresh" / "state.db").exists() and (tmp_path / "fresh" / "state.init.json").exists()


def test_reason_is_1_to_1000_characters(backend) -> None:
    switch = backend.guard().kill_switch
    with pytest.raises(InvalidRequest, match=r"^reason: 1001 characters is too long; at most 1000"):
        switch.disable(ADMIN, "x" * 1001)
    with pytest.raises(InvalidRequest, match=r"^reason: 100000 characters"):
        switch.disable(ADMIN, "y" * 100_000)
    assert backend.audit.recent(5) == []
    change = switch.disable(ADMIN, "  " + "z" * 1000 + "  ")
    assert backend.audit.get(change.audit_id).parameters["reason"] == "z" * 1000


def test_change_is_done_even_when_its_alert_fails(backend) -> None:
    guard = backend.guard()

    def broken(severity: str, alarm: str, details: dict) -> None:
        raise ConnectionError("alert channel down")

    guard.kill_switch.on_alert = broken
    change = guard.kill_switch.disable(ADMIN, "incident")
    assert change.status == "DISABLED" and guard.kill_switch.status().active
    assert backend.audit.get(change.audit_id).status is AuditStatus.SUCCESS


def _refuse_updates(path: Path, when: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TRIGGER refuse_completion BEFORE UPDATE ON audit WHEN {when} "
                     "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END")


def test_change_whose_full_completion_fails_still_completes(backend) -> None:
    if backend.name != "sqlite":
        pytest.skip("the failing completion is provoked with an SQLite trigger")
    _refuse_updates(Path(backend.spec[1]), "length(NEW.results) > 40")
    guard = backend.guard()
    change = guard.kill_switch.disable(ADMIN, "incident")
    assert change.status == "DISABLED" and guard.kill_switch.status().active
    record = backend.audit.get(change.audit_id)
    assert record.status is AuditStatus.SUCCESS and record.results == {"state_written": True}


def test_change_whose_completion_always_fails_is_still_reported_done(backend) -> None:
    if backend.name != "sqlite":
        pytest.skip("the failing completion is provoked with an SQLite trigger")
    _refuse_updates(Path(backend.spec[1]), "1")
    guard = backend.guard()
    change = guard.kill_switch.disable(ADMIN, "incident")
    assert change.status == "DISABLED" and guard.kill_switch.status().active
    assert ("P1", "AUDIT_INCOMPLETE") in [(severity, alarm) for severity, alarm, _ in backend.alerts]
