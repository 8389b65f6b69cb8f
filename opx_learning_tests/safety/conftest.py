"""The `backend` fixture: the same behavioural suite against SQLite and DynamoDB (moto over HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from opx_learning.safety.guard import Guard
from opx_learning.safety.maintenance import MaintenanceCalendar
from opx_learning.safety.models import AuthorityType, Principal
from opx_learning_tests.safety.safety_workers import BackendSpec, open_stores

ADMIN = Principal("ops-admin", AuthorityType.EMERGENCY_OVERRIDE)
SRE = Principal("alice", AuthorityType.ON_CALL_SRE)
OPERATOR = Principal("bob", AuthorityType.HUMAN_OPERATOR)


class Clock:
    """A settable clock for the guard (defaults to real time until set)."""

    def __init__(self) -> None:
        self.fixed: datetime | None = None

    def __call__(self) -> datetime:
        if self.fixed is not None:
            return self.fixed
        now = datetime.now(UTC)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class Backend:
    """One backend's stores plus helpers the tests need."""

    name: str
    spec: BackendSpec
    audit: Any
    kill_switch: Any
    rate_limiter: Any
    alerts: list[tuple[str, str, dict]] = field(default_factory=list)
    clock: Clock = field(default_factory=Clock)

    def guard(self, calendar: MaintenanceCalendar | None = None) -> Guard:
        """A guard recording alerts in `self.alerts`, with an empty calendar unless given."""
        return Guard(
            self.audit,
            self.kill_switch,
            self.rate_limiter,
            calendar=calendar or MaintenanceCalendar([]),
            on_alert=lambda severity, alarm, details: self.alerts.append((severity, alarm, details)),
            clock=self.clock,
        )

    def corrupt_kill_switch(self) -> None:
        """Store a kill-switch state that cannot be parsed."""
        if self.name == "sqlite":
            self.kill_switch.write_raw("{not json")
        else:
            self.kill_switch.write_raw({"enabled": {"S": "maybe"}})


def _atomic_moto_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's conditional put atomic, as DynamoDB's is.

    moto evaluates a ConditionExpression and stores the item in two Python steps
    without a lock, so two server threads can interleave there; DynamoDB performs
    both atomically per item. The lock restores that guarantee so the concurrency
    proofs test our protocol rather than moto's thread scheduling.
    """
    from moto.dynamodb.models.table import Table

    lock = threading.RLock()
    original = Table.put_item

    def put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(Table, "put_item", put_item)
    # A transaction checks every condition and then writes, restoring a snapshot of the tables when one
    # fails; without the lock a concurrent writer's committed items can be rolled back with it.
    from moto.dynamodb.models import DynamoDBBackend

    transact = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return transact(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", transact_write_items)


@pytest.fixture(params=["sqlite", "dynamo"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """The initialised SQLite file of `opx_home`, or initialised DynamoDB tables on the session's moto server."""
    if request.param == "sqlite":
        home = request.getfixturevalue("opx_home")
        spec: BackendSpec = ("sqlite", str(home / "state.db"))
    else:
        endpoint = request.getfixturevalue("aws_env")
        monkeypatch.setenv("OPX_BACKEND", "aws")
        _atomic_moto_writes(monkeypatch)
        from opx_learning.config import get_settings
        from opx_learning.safety.dynamo_backend import create_tables, dynamo_client
        from opx_learning.safety.state import initialise

        settings = get_settings()
        create_tables(settings, client=dynamo_client(settings.region, endpoint_url=endpoint))
        initialise(settings)
        spec = ("dynamo", endpoint)
    audit, kill_switch, rate_limiter = open_stores(spec)
    yield Backend(request.param, spec, audit, kill_switch, rate_limiter)
