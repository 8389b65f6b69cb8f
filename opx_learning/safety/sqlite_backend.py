"""Local backend: audit trail, kill switch and rate limits in one SQLite file (WAL, transactions).

Every call opens its own short connection, so any number of threads and
processes (Dagster runs each run in its own process) can share the file.
Only `opx-learning init` creates the file (`create=True`): every other open
refuses a missing file or one without the schema (deleted, truncated, never
initialised), so a lost state can never come back as an empty "enabled" one.
Append-only rules are enforced by triggers inside the database, so they hold
even against code that bypasses this module: a DELETE on the audit table
aborts, and an UPDATE aborts once the record is no longer RUNNING.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from opx_learning.core.windows import iso, to_utc
from opx_learning.safety.audit import AuditLog
from opx_learning.safety.kill_switch import (
    LOST_HINT,
    NOT_INITIALISED_HINT,
    KillSwitchStore,
)
from opx_learning.safety.models import (
    AuditRecord,
    AuditStatus,
    AuditTransitionError,
    AuthorityType,
    BackendUnavailable,
    KillSwitchState,
    KillSwitchUnavailable,
    OperationType,
    Principal,
    TriggerType,
)
from opx_learning.safety.rate_limit import WINDOW_SECONDS, RateLimiter

BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    audit_id TEXT PRIMARY KEY,
    operation_type TEXT NOT NULL,
    trigger_type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('RUNNING', 'SUCCESS', 'FAILED', 'SKIPPED')),
    start_time TEXT NOT NULL,
    end_time TEXT,
    duration_ms INTEGER,
    parameters TEXT NOT NULL,
    results TEXT NOT NULL,
    error_message TEXT,
    principal TEXT NOT NULL,
    authority TEXT NOT NULL,
    run_id TEXT,
    version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_operation ON audit (operation_type, start_time);
CREATE INDEX IF NOT EXISTS audit_by_status ON audit (status, start_time);
CREATE INDEX IF NOT EXISTS audit_by_start ON audit (start_time);
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only and cannot be deleted');
END;
CREATE TRIGGER IF NOT EXISTS audit_terminal_is_final BEFORE UPDATE ON audit
WHEN OLD.status != 'RUNNING'
BEGIN
    SELECT RAISE(ABORT, 'audit record is terminal and cannot change');
END;
CREATE TRIGGER IF NOT EXISTS audit_identity_is_fixed BEFORE UPDATE ON audit
WHEN NEW.audit_id != OLD.audit_id OR NEW.operation_type != OLD.operation_type
    OR NEW.start_time != OLD.start_time OR NEW.principal != OLD.principal
    OR NEW.authority != OLD.authority OR NEW.trigger_type != OLD.trigger_type
BEGIN
    SELECT RAISE(ABORT, 'audit record identity cannot change');
END;
CREATE TABLE IF NOT EXISTS kill_switch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_limit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    principal TEXT NOT NULL,
    operation_type TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_limit_lookup ON rate_limit_events (principal, operation_type, at);
"""

_COLUMNS = (
    "audit_id, operation_type, trigger_type, status, start_time, end_time, duration_ms, parameters, "
    "results, error_message, principal, authority, run_id, version"
)


class SqliteState:
    """The shared SQLite file: opens WAL connections and checks (or, with `create`, creates) the schema once.

    Args:
        path: database file.
        timeout: seconds a writer waits for the lock before the store counts as unavailable.
        create: create the file, its parent directory and the schema (initialisation only).
    """

    def __init__(self, path: Path | str, timeout: float = BUSY_TIMEOUT_S, *, create: bool = False) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.create = create
        self._ready = False

    def _open(self) -> sqlite3.Connection:
        if self.create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        if not self.path.exists():
            raise BackendUnavailable(f"state database {self.path} does not exist")
        # mode=rw: a file deleted in the meantime is an error, never silently created again.
        uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=rw"
        return sqlite3.connect(uri, timeout=self.timeout, isolation_level=None, uri=True)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        if not self.create:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kill_switch'").fetchone()
            if found is None:
                raise BackendUnavailable(f"state database {self.path} is empty or has no kill-switch table")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(_SCHEMA)

    @contextmanager
    def connect(self, *, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection inside one transaction (`BEGIN IMMEDIATE` takes the write lock up front).

        Raises:
            BackendUnavailable: the file is unreadable, corrupt or locked beyond the timeout.
        """
        try:
            conn = self._open()
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailable(f"state database {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            if not self._ready:
                self._prepare(conn)
                self._ready = True
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"state database {self.path}: {exc}") from exc
        finally:
            conn.close()


def _row_to_record(row: tuple) -> AuditRecord:
    (audit_id, operation, trigger, status, start, end, duration, params, results, error, principal, authority,
     run_id, version) = row
    return AuditRecord(
        audit_id=audit_id,
        operation_type=OperationType(operation),
        trigger_type=TriggerType(trigger),
        status=AuditStatus(status),
        start_time=to_utc(start),
        end_time=to_utc(end) if end else None,
        duration_ms=duration,
        parameters=json.loads(params),
        results=json.loads(results),
        error_message=error,
        triggered_by=Principal(principal, AuthorityType(authority)),
        run_id=run_id,
        version=version,
    )


def _record_values(record: AuditRecord) -> tuple:
    return (
        record.audit_id,
        record.operation_type.value,
        record.trigger_type.value,
        record.status.value,
        iso(record.start_time),
        iso(record.end_time) if record.end_time else None,
        record.duration_ms,
        json.dumps(record.parameters, sort_keys=True),
        json.dumps(record.results, sort_keys=True),
        record.error_message,
        record.triggered_by.principal,
        record.triggered_by.authority.value,
        record.run_id,
        record.version,
    )


class SqliteAuditLog(AuditLog):
    """Audit trail in the `audit` table of the state database."""

    def __init__(self, state: SqliteState) -> None:
        self.state = state

    def append(self, record: AuditRecord) -> AuditRecord:
        """Insert a new record; an existing id is refused."""
        try:
            with self.state.connect(immediate=True) as conn:
                conn.execute(f"INSERT INTO audit ({_COLUMNS}) VALUES ({', '.join('?' * 14)})", _record_values(record))
        except sqlite3.IntegrityError as exc:
            raise AuditTransitionError(f"audit record {record.audit_id} already exists") from exc
        return record

    def get(self, audit_id: str) -> AuditRecord | None:
        """The record with this id, or None."""
        with self.state.connect() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM audit WHERE audit_id = ?", (audit_id,)).fetchone()
        return _row_to_record(row) if row else None

    def query(
        self,
        *,
        operation_type: OperationType | None = None,
        status: AuditStatus | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Filtered records, newest first."""
        clauses, args = [], []
        if operation_type is not None:
            clauses.append("operation_type = ?")
            args.append(operation_type.value)
        if status is not None:
            clauses.append("status = ?")
            args.append(status.value)
        if since is not None:
            clauses.append("start_time >= ?")
            args.append(iso(since))
        if until is not None:
            clauses.append("start_time < ?")
            args.append(iso(until))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_COLUMNS} FROM audit {where} ORDER BY start_time DESC, audit_id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.state.connect() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [_row_to_record(row) for row in rows]

    def _update_running(self, record: AuditRecord, expected_version: int) -> bool:
        with self.state.connect(immediate=True) as conn:
            cursor = conn.execute(
                "UPDATE audit SET status = ?, end_time = ?, duration_ms = ?, results = ?, error_message = ?, "
                "run_id = ?, version = ? WHERE audit_id = ? AND status = 'RUNNING' AND version = ?",
                (
                    record.status.value,
                    iso(record.end_time) if record.end_time else None,
                    record.duration_ms,
                    json.dumps(record.results, sort_keys=True),
                    record.error_message,
                    record.run_id,
                    record.version,
                    record.audit_id,
                    expected_version,
                ),
            )
            return cursor.rowcount == 1


class SqliteKillSwitchStore(KillSwitchStore):
    """Kill-switch state as one JSON row (id 1) of the state database."""

    def __init__(self, state: SqliteState) -> None:
        self.state = state

    @property
    def marker(self) -> Path:
        """The file `opx-learning init` writes beside the database; it outlives a deleted or truncated database."""
        return self.state.path.with_suffix(".init.json")

    def initialised(self) -> bool:
        """Whether this state was initialised once (the marker or the database file exists)."""
        return self.marker.exists() or self.state.path.exists()

    def mark_initialised(self, details: dict[str, Any]) -> None:
        """Write the marker file (JSON `details`)."""
        try:
            self.marker.write_text(json.dumps(details, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise BackendUnavailable(f"cannot write {self.marker}: {exc}") from exc

    def read(self) -> KillSwitchState:
        """The stored state.

        Raises:
            KillSwitchUnavailable: no state stored (file missing, empty, row gone), malformed or unreadable.
        """
        hint = LOST_HINT if self.initialised() else NOT_INITIALISED_HINT
        try:
            with self.state.connect() as conn:
                row = conn.execute("SELECT state FROM kill_switch WHERE id = 1").fetchone()
        except BackendUnavailable as exc:
            raise KillSwitchUnavailable(f"kill switch state unavailable: {exc}; {hint}") from exc
        if row is None:
            raise KillSwitchUnavailable(
                f"kill switch state unavailable: no kill-switch state stored in {self.state.path}; {hint}"
            )
        try:
            return KillSwitchState.from_dict(json.loads(row[0]))
        except (ValueError, KeyError, TypeError) as exc:
            raise KillSwitchUnavailable(
                f"kill switch state in {self.state.path} is malformed: {exc}; {LOST_HINT}"
            ) from exc

    def write(self, state: KillSwitchState, expected_version: int | None) -> bool:
        """Compare-and-set the state row."""
        payload = json.dumps(state.to_dict(), sort_keys=True)
        with self.state.connect(immediate=True) as conn:
            row = conn.execute("SELECT version FROM kill_switch WHERE id = 1").fetchone()
            stored = row[0] if row else 0
            if expected_version is not None and stored != expected_version:
                return False
            conn.execute(
                "INSERT INTO kill_switch (id, state, version) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET state = excluded.state, version = excluded.version",
                (payload, state.version),
            )
        return True

    def write_raw(self, text: str) -> None:
        """Store an arbitrary state payload (used to prove that a malformed state fails closed)."""
        with self.state.connect(immediate=True) as conn:
            conn.execute(
                "INSERT INTO kill_switch (id, state, version) VALUES (1, ?, 0) "
                "ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                (text,),
            )


class SqliteRateLimiter(RateLimiter):
    """Sliding-window counts in `rate_limit_events`; each decision is one `BEGIN IMMEDIATE` transaction."""

    def __init__(
        self,
        state: SqliteState,
        limits: Mapping[OperationType, int] | None = None,
        window_seconds: int = WINDOW_SECONDS,
    ) -> None:
        super().__init__(limits, window_seconds)
        self.state = state

    def _acquire(self, principal: str, operation: OperationType, limit: int, now: float) -> tuple[bool, int, float | None]:
        with self.state.connect(immediate=True) as conn:
            conn.execute("DELETE FROM rate_limit_events WHERE at <= ?", (now - self.window_seconds,))
            used, oldest = self._count(conn, principal, operation, now)
            if used >= limit:
                return False, used, oldest
            conn.execute(
                "INSERT INTO rate_limit_events (principal, operation_type, at) VALUES (?, ?, ?)",
                (principal, operation.value, now),
            )
        return True, used + 1, oldest if oldest is not None else now

    def _usage(self, principal: str, operation: OperationType, now: float) -> tuple[int, float | None]:
        with self.state.connect() as conn:
            return self._count(conn, principal, operation, now)

    def _count(
        self, conn: sqlite3.Connection, principal: str, operation: OperationType, now: float
    ) -> tuple[int, float | None]:
        used, oldest = conn.execute(
            "SELECT COUNT(*), MIN(at) FROM rate_limit_events WHERE principal = ? AND operation_type = ? AND at > ?",
            (principal, operation.value, now - self.window_seconds),
        ).fetchone()
        return int(used), oldest


def open_sqlite(
    path: Path | str,
    *,
    limits: Mapping[OperationType, int] | None = None,
    timeout: float = BUSY_TIMEOUT_S,
    create: bool = False,
) -> tuple[SqliteAuditLog, SqliteKillSwitchStore, SqliteRateLimiter]:
    """The three SQLite stores over one state file (`create` only when initialising it)."""
    state = SqliteState(path, timeout, create=create)
    return SqliteAuditLog(state), SqliteKillSwitchStore(state), SqliteRateLimiter(state, limits)

