"""Local backend: audit trail, kill switch and rate limits in one SQLite file (WAL, transactions).

Every call opens its own short connection, so any number of threads and
processes (Dagster runs each run in its own process) can share the file.
Only `opx-learning init` creates the file (`create=True`): every other open
refuses a missing file or one without the schema (deleted, truncated, never
initialised), so a lost state can never come back as an empty "enabled" one.
Append-only rules are enforced by triggers inside the database, so they hold
even against code that bypasses this module: a DELETE on the audit table
aborts, and an UPDATE aborts once the record is no longer RUNNING.

Every audit write and every approved threshold version also appends a link to its hash
chain (`chain_links`, in the same transaction), and the chain heads are anchored in
`anchor.db` beside the database (docs/integrity.md#hash-chain). Opening the file checks,
instead of silently repairing, that its triggers are all there and that its chains still
contain the anchored heads; a kill-switch read also checks the state against the last
kill-switch audit record. A disagreement is `STATE_MISMATCH` (fail closed) until the state
is restored or adopted (`opx-learning init --adopt`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from opx_learning.core.windows import iso, to_utc
from opx_learning.integrity.manifest import MANIFEST_SCHEMA, has_manifest_table
from opx_learning.safety.audit import AuditLog, utcnow
from opx_learning.safety.chain import (
    ADOPT_HINT,
    AUDIT_CHAIN,
    CHAINS,
    KILL_SWITCH_KINDS,
    THRESHOLD_CHAIN,
    THRESHOLD_KIND,
    ChainTampered,
    Head,
    Link,
    Problem,
    StateMismatch,
    anchor_problem,
    audit_content,
    audit_kind,
    check_against_trail,
    compare,
    content_hash,
    genesis,
    record_values,
    stored_record,
    walk,
)
from opx_learning.safety.home import ACCESS_HINT
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


_CHAIN_SCHEMA = """
CREATE TABLE IF NOT EXISTS chain_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chain_links (
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    kind TEXT NOT NULL,
    item_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    link_hash TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chain_links_by_item ON chain_links (chain, item_id, seq);
CREATE INDEX IF NOT EXISTS chain_links_by_kind ON chain_links (chain, kind, seq);
CREATE TRIGGER IF NOT EXISTS chain_links_no_delete BEFORE DELETE ON chain_links
BEGIN
    SELECT RAISE(ABORT, 'chain links are append-only and cannot be deleted');
END;
CREATE TRIGGER IF NOT EXISTS chain_links_no_update BEFORE UPDATE ON chain_links
BEGIN
    SELECT RAISE(ABORT, 'chain links cannot change');
END;
CREATE TRIGGER IF NOT EXISTS chain_meta_no_delete BEFORE DELETE ON chain_meta
BEGIN
    SELECT RAISE(ABORT, 'the state identity cannot be deleted');
END;
CREATE TRIGGER IF NOT EXISTS chain_meta_no_update BEFORE UPDATE ON chain_meta
BEGIN
    SELECT RAISE(ABORT, 'the state identity cannot change');
END;
"""

_ANCHOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS anchors (
    state_file TEXT NOT NULL,
    chain TEXT NOT NULL,
    state_id TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 0),
    link_hash TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (state_file, chain)
);
CREATE TABLE IF NOT EXISTS anchor_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state_file TEXT NOT NULL,
    at TEXT NOT NULL,
    entry TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS anchors_no_delete BEFORE DELETE ON anchors
BEGIN
    SELECT RAISE(ABORT, 'anchors cannot be deleted');
END;
CREATE TRIGGER IF NOT EXISTS anchors_forward_only BEFORE UPDATE ON anchors
WHEN NEW.epoch < OLD.epoch OR (NEW.epoch = OLD.epoch AND (NEW.seq < OLD.seq OR NEW.state_id != OLD.state_id))
BEGIN
    SELECT RAISE(ABORT, 'an anchor only moves forward (or to a new epoch by an audited adoption)');
END;
CREATE TRIGGER IF NOT EXISTS anchor_log_no_delete BEFORE DELETE ON anchor_log
BEGIN
    SELECT RAISE(ABORT, 'the anchor log is append-only');
END;
CREATE TRIGGER IF NOT EXISTS anchor_log_no_update BEFORE UPDATE ON anchor_log
BEGIN
    SELECT RAISE(ABORT, 'the anchor log is append-only');
END;
"""

ANCHOR_FILE = "anchor.db"
_TRIGGER_NAME = re.compile(r"CREATE TRIGGER IF NOT EXISTS (\w+)")
# Moves an anchor to the link just written, only if the chain still holds the anchored link
# and belongs to the anchored state: a swapped or rolled-back database never drags its anchor along.
_ADVANCE = (
    "UPDATE anchor.anchors SET seq = :seq, link_hash = :hash, updated_at = :at "
    "WHERE state_file = :file AND chain = :chain AND seq < :seq "
    "AND state_id = (SELECT value FROM main.chain_meta WHERE key = 'state_id') "
    "AND (seq = 0 OR EXISTS (SELECT 1 FROM main.chain_links l WHERE l.chain = anchors.chain "
    "AND l.seq = anchors.seq AND l.link_hash = anchors.link_hash))"
)


def expected_triggers() -> tuple[str, ...]:
    """Every trigger a chained state database must have."""
    from opx_learning.safety.threshold_store import _SQLITE_SCHEMA

    text = _SCHEMA + _CHAIN_SCHEMA + "\n".join(_SQLITE_SCHEMA) + "\n".join(MANIFEST_SCHEMA)
    return tuple(_TRIGGER_NAME.findall(text))


def _uri(path: Path, mode: str) -> str:
    return f"file:{urllib.parse.quote(str(path.absolute()))}?mode={mode}"


def _accessible(path: Path) -> None:
    """Raise BackendUnavailable (caused by PermissionError) when an existing `path` is not readable and writable.

    An anchor store that cannot be opened for lack of permission is not a deleted one.
    """
    try:
        os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BackendUnavailable(f"anchor store {path}: {exc}") from exc
    if not os.access(path, os.R_OK | os.W_OK):
        error = PermissionError(errno.EACCES, "permission denied (needs read and write access)", str(path))
        raise BackendUnavailable(f"anchor store {path}: {error}") from error


def _link_from_row(chain: str, row: tuple) -> Link:
    return Link(chain, int(row[0]), row[1], row[2], row[3], row[4], row[5])


_LINK_COLUMNS = "seq, kind, item_id, content_hash, prev_hash, link_hash"


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

    @property
    def anchor_path(self) -> Path:
        """The anchor store beside the database (`anchor.db`), outside the file it protects."""
        return self.path.with_name(ANCHOR_FILE)

    def _open(self) -> sqlite3.Connection:
        if self.create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return sqlite3.connect(_uri(self.path, "rwc"), timeout=self.timeout, isolation_level=None, uri=True)
        if not self.path.exists():
            raise BackendUnavailable(f"state database {self.path} does not exist")
        if not os.access(self.path, os.R_OK | os.W_OK) or not os.access(self.path.parent, os.W_OK | os.X_OK):
            # SQLite would only say "unable to open database file"; name the cause.
            raise PermissionError(errno.EACCES, "permission denied (the file needs read and write access, its "
                                  "directory write and search access)", str(self.path))
        # mode=rw: a file deleted in the meantime is an error, never silently created again.
        return sqlite3.connect(_uri(self.path, "rw"), timeout=self.timeout, isolation_level=None, uri=True)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        if self.create:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA + _CHAIN_SCHEMA + ";\n".join(_threshold_schema()) + ";")
            conn.execute("INSERT OR IGNORE INTO chain_meta (key, value) VALUES ('state_id', ?)", (uuid.uuid4().hex,))
            return
        found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kill_switch'").fetchone()
        if found is None:
            raise BackendUnavailable(f"state database {self.path} is empty or has no kill-switch table")
        missing = self.missing_triggers(conn)
        if self.legacy(conn):
            raise StateMismatch(f"{self.path} predates the hash-chained audit trail (no chain_meta table); "
                                f"build its chain with `opx-learning init --adopt` (EMERGENCY_OVERRIDE, audited)")
        if missing:
            raise ChainTampered(f"trigger {', '.join(missing)} was missing from {self.path} (its append-only "
                                f"protection was dropped); {ADOPT_HINT}")
        conn.execute("PRAGMA journal_mode = WAL")
        heads = self.anchored_heads()
        problem = self.anchor_mismatch(conn, heads)
        if problem:
            raise StateMismatch(f"{problem}; {ADOPT_HINT}")

    @staticmethod
    def legacy(conn: sqlite3.Connection) -> bool:
        """Whether the database predates the hash chain (no `chain_meta` table)."""
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chain_meta'").fetchone() is None

    @staticmethod
    def missing_triggers(conn: sqlite3.Connection) -> list[str]:
        """The protecting triggers the database lacks (threshold and manifest ones only where their tables exist)."""
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('trigger', 'table')")}
        wanted = [name for name in expected_triggers()
                  if not (name.startswith("threshold_") and "threshold_versions" not in names)
                  and not (name.startswith("manifest_") and "manifest" not in names)]
        return [name for name in wanted if name not in names]

    @staticmethod
    def state_id(conn: sqlite3.Connection, schema: str = "main") -> str | None:
        """The random identity written when the database was created (None: none stored)."""
        row = conn.execute(f"SELECT value FROM {schema}.chain_meta WHERE key = 'state_id'").fetchone()
        return row[0] if row else None

    @staticmethod
    def last_link(conn: sqlite3.Connection, chain: str) -> Link | None:
        """The newest link of `chain`, or None."""
        row = conn.execute(f"SELECT {_LINK_COLUMNS} FROM chain_links WHERE chain = ? ORDER BY seq DESC LIMIT 1",
                           (chain,)).fetchone()
        return _link_from_row(chain, row) if row else None

    @staticmethod
    def link_at(conn: sqlite3.Connection, chain: str, seq: int) -> Link | None:
        """The link `seq` of `chain`, or None."""
        row = conn.execute(f"SELECT {_LINK_COLUMNS} FROM chain_links WHERE chain = ? AND seq = ?",
                           (chain, seq)).fetchone()
        return _link_from_row(chain, row) if row else None

    @staticmethod
    def last_link_of(conn: sqlite3.Connection, chain: str, item_id: str) -> Link | None:
        """The newest link of one item, or None."""
        row = conn.execute(f"SELECT {_LINK_COLUMNS} FROM chain_links WHERE chain = ? AND item_id = ? "
                           "ORDER BY seq DESC LIMIT 1", (chain, item_id)).fetchone()
        return _link_from_row(chain, row) if row else None

    def heads(self, conn: sqlite3.Connection) -> dict[str, Head]:
        """The current head of every chain (seq 0 and the genesis hash for an empty one)."""
        state_id = self.state_id(conn) or ""
        heads = {}
        for chain in CHAINS:
            last = self.last_link(conn, chain)
            heads[chain] = last.head() if last else Head(chain, 0, genesis(state_id, chain))
        return heads

    def link(self, conn: sqlite3.Connection, chain: str, kind: str, item_id: str, content: Any) -> Link:
        """Append the link of one write to `chain` and move the anchor to it (same transaction, anchored connection)."""
        link = self._append_link(conn, chain, kind, item_id, content)
        conn.execute(_ADVANCE, {"seq": link.seq, "hash": link.link_hash, "at": iso(utcnow()), "file": self.path.name,
                                "chain": chain})
        return link

    def _append_link(self, conn: sqlite3.Connection, chain: str, kind: str, item_id: str, content: Any) -> Link:
        last = self.last_link(conn, chain)
        if last is None:
            seq, prev = 1, genesis(self.state_id(conn) or "", chain)
        else:
            seq, prev = last.seq + 1, last.link_hash
        link = Link.make(chain, seq, kind, item_id, content_hash(content), prev)
        conn.execute(
            f"INSERT INTO chain_links (chain, {_LINK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (chain, link.seq, link.kind, link.item_id, link.content_hash, link.prev_hash, link.link_hash),
        )
        return link

    def anchored_heads(self, conn: sqlite3.Connection | None = None) -> dict[str, tuple[str, Head]] | None:
        """The anchored `(state_id, head)` of each chain of this database (None: no anchor file or no anchor).

        Args:
            conn: a connection with the anchor store attached as `anchor` (default: open the anchor file read-only).

        Raises:
            StateMismatch: the anchor store cannot be read as a database.
            BackendUnavailable: the anchor file exists but this process may not read and write it.
        """
        query = "SELECT chain, state_id, seq, link_hash FROM {schema}anchors WHERE state_file = ?"
        try:
            if conn is not None:
                rows = conn.execute(query.format(schema="anchor."), (self.path.name,)).fetchall()
            else:
                _accessible(self.anchor_path)
                if not self.anchor_path.exists():
                    return None
                with closing(sqlite3.connect(_uri(self.anchor_path, "ro"), uri=True, timeout=self.timeout)) as own:
                    rows = own.execute(query.format(schema=""), (self.path.name,)).fetchall()
        except sqlite3.Error as exc:
            raise StateMismatch(f"anchor store {self.anchor_path} cannot be read: {exc}; {ADOPT_HINT}") from exc
        if not rows:
            return None
        return {chain: (state_id, Head(chain, int(seq), link_hash)) for chain, state_id, seq, link_hash in rows}

    def anchor_mismatch(self, conn: sqlite3.Connection, heads: dict[str, tuple[str, Head]] | None) -> str | None:
        """Why this database disagrees with its anchors (None when every chain holds its anchored head)."""
        if heads is None:
            return (f"{self.anchor_path} has no anchor for {self.path} (the anchor store was deleted, or the "
                    "state was created elsewhere)")
        state_id = self.state_id(conn)
        for chain, (anchored_id, head) in sorted(heads.items()):
            if anchored_id != state_id:
                return (f"{self.path} holds state {str(state_id)[:12]}… but {self.anchor_path} pins state "
                        f"{anchored_id[:12]}… (another state database was swapped in, or it was re-created)")
            last = self.last_link(conn, chain)
            current = last.head() if last else Head(chain, 0, genesis(state_id or "", chain))
            problem = anchor_problem(head, self.link_at(conn, chain, head.seq), current, str(self.anchor_path))
            if problem:
                return problem
        return None

    def build_chain(self, conn: sqlite3.Connection) -> int:
        """Link the records of a database that predates the chain, oldest first (adoption); returns the links made."""
        from opx_learning.safety.threshold_store import threshold_content

        made = 0
        if self.last_link(conn, AUDIT_CHAIN) is None:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY start_time, audit_id").fetchall()
            for row in rows:
                self._append_link(conn, AUDIT_CHAIN, audit_kind(row[1], row[3]), row[0], audit_content(tuple(row)))
                made += 1
        if self.last_link(conn, THRESHOLD_CHAIN) is None:
            for row in conn.execute("SELECT version, proposal_id, approved_at, doc FROM threshold_versions "
                                    "ORDER BY version").fetchall():
                self._append_link(conn, THRESHOLD_CHAIN, THRESHOLD_KIND, str(row[0]), threshold_content(*row))
                made += 1
        return made

    def write_anchor(self, conn: sqlite3.Connection, entry: dict[str, Any]) -> dict[str, Head]:
        """Pin the database's current heads in the anchor store as a new epoch (initialisation, adoption).

        Args:
            conn: a connection to the database (its heads are read in it).
            entry: what to log beside the new anchor (who, why, the previous heads).

        Returns:
            The heads now anchored.
        """
        heads = self.heads(conn)
        state_id = self.state_id(conn) or ""
        now = iso(utcnow())
        with closing(sqlite3.connect(_uri(self.anchor_path, "rwc"), uri=True, timeout=self.timeout,
                                     isolation_level=None)) as anchor:
            anchor.execute("PRAGMA journal_mode = WAL")
            anchor.executescript(_ANCHOR_SCHEMA)
            anchor.execute("BEGIN IMMEDIATE")
            (epoch,) = anchor.execute("SELECT COALESCE(MAX(epoch), 0) + 1 FROM anchors WHERE state_file = ?",
                                      (self.path.name,)).fetchone()
            for head in heads.values():
                anchor.execute(
                    "INSERT INTO anchors (state_file, chain, state_id, seq, link_hash, epoch, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (state_file, chain) DO UPDATE SET "
                    "state_id = excluded.state_id, seq = excluded.seq, link_hash = excluded.link_hash, "
                    "epoch = excluded.epoch, updated_at = excluded.updated_at",
                    (self.path.name, head.chain, state_id, head.seq, head.link_hash, epoch, now),
                )
            log = {**entry, "epoch": epoch, "state_id": state_id, "heads": [h.to_dict() for h in heads.values()]}
            anchor.execute("INSERT INTO anchor_log (state_file, at, entry) VALUES (?, ?, ?)",
                           (self.path.name, now, json.dumps(log, sort_keys=True)))
            anchor.execute("COMMIT")
        return heads

    @contextmanager
    def connect(self, *, immediate: bool = False, anchored: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection inside one transaction (`BEGIN IMMEDIATE` takes the write lock up front).

        Args:
            immediate: take the write lock at the start.
            anchored: attach the anchor store as `anchor` (chain writes and kill-switch reads).

        Raises:
            BackendUnavailable: the file is unreadable, corrupt or locked beyond the timeout.
            StateMismatch: the database disagrees with its anchor or lost a protecting trigger.
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
            if anchored:
                _accessible(self.anchor_path)
                try:
                    conn.execute("ATTACH DATABASE ? AS anchor", (_uri(self.anchor_path, "rw"),))
                except sqlite3.OperationalError as exc:
                    raise StateMismatch(f"anchor store {self.anchor_path} cannot be opened ({exc}): it was deleted "
                                        f"or never created; {ADOPT_HINT}") from exc
            conn.execute("PRAGMA synchronous = NORMAL")
            if anchored:
                conn.execute("PRAGMA anchor.synchronous = NORMAL")
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


def verify_chains(path: Path) -> tuple[list[Problem], dict[str, Head], list[str]]:
    """Walk the chains of a state database read-only: links, records, triggers and anchors (the integrity sweep).

    Returns:
        The problems found, the database's chain heads, and notes (e.g. a database that predates the chain).

    Raises:
        sqlite3.OperationalError: the database is locked (no verdict).
    """
    from opx_learning.safety.threshold_store import threshold_content

    state = SqliteState(path)
    problems: list[Problem] = []
    with closing(sqlite3.connect(_uri(path, "ro"), uri=True, timeout=BUSY_TIMEOUT_S)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "audit" not in tables:
            return [], {}, []
        if "chain_meta" not in tables:
            return [], {}, [f"{path} predates the hash-chained audit trail; `opx-learning init --adopt` builds it"]
        for name in SqliteState.missing_triggers(conn):
            problems.append(Problem(f"trigger {name}", f"trigger {name} was missing (its append-only protection "
                                                       "was dropped)"))
        state_id = SqliteState.state_id(conn) or ""
        contents = {
            AUDIT_CHAIN: {row[0]: content_hash(audit_content(tuple(row)))
                          for row in conn.execute(f"SELECT {_COLUMNS} FROM audit")},
            THRESHOLD_CHAIN: {str(row[0]): content_hash(threshold_content(*row)) for row in conn.execute(
                "SELECT version, proposal_id, approved_at, doc FROM threshold_versions")}
            if "threshold_versions" in tables else {},
        }
        labels = {AUDIT_CHAIN: "audit record", THRESHOLD_CHAIN: "threshold version"}
        heads: dict[str, Head] = {}
        for chain in CHAINS:
            links = [_link_from_row(chain, row) for row in conn.execute(
                f"SELECT {_LINK_COLUMNS} FROM chain_links WHERE chain = ? ORDER BY seq", (chain,))]
            problems += walk(chain, links, genesis(state_id, chain))
            problems += compare(chain, links, contents[chain], labels[chain])
            heads[chain] = links[-1].head() if links else Head(chain, 0, genesis(state_id, chain))
        try:
            anchored = state.anchored_heads()
        except StateMismatch as exc:
            problems.append(Problem(str(state.anchor_path), str(exc)))
            return problems, heads, []
        if anchored is None:
            problems.append(Problem(str(state.anchor_path), f"no anchor for {path.name} in {state.anchor_path} "
                                                            "(the anchor store was deleted)"))
            return problems, heads, []
        for chain, (anchored_id, head) in sorted(anchored.items()):
            if anchored_id != state_id:
                problems.append(Problem(str(state.anchor_path), f"the database holds state {state_id[:12]}… but "
                                        f"the anchor pins state {anchored_id[:12]}… (swapped or re-created)"))
                break
            problem = anchor_problem(head, SqliteState.link_at(conn, chain, head.seq), heads[chain],
                                     str(state.anchor_path))
            if problem:
                problems.append(Problem(f"{chain} anchor", problem, head.link_hash))
    return problems, heads, []


def _threshold_schema() -> tuple[str, ...]:
    from opx_learning.safety.threshold_store import _SQLITE_SCHEMA

    return _SQLITE_SCHEMA


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


class SqliteAuditLog(AuditLog):
    """Audit trail in the `audit` table of the state database."""

    def __init__(self, state: SqliteState) -> None:
        self.state = state

    def append(self, record: AuditRecord) -> AuditRecord:
        """Insert a new record; an existing id is refused."""
        values = record_values(record)
        try:
            with self.state.connect(immediate=True, anchored=True) as conn:
                conn.execute(f"INSERT INTO audit ({_COLUMNS}) VALUES ({', '.join('?' * 14)})", values)
                self.state.link(conn, AUDIT_CHAIN, audit_kind(values[1], values[3]), record.audit_id,
                                audit_content(values))
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
        with self.state.connect(immediate=True, anchored=True) as conn:
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
            if cursor.rowcount != 1:
                return False
            row = conn.execute(f"SELECT {_COLUMNS} FROM audit WHERE audit_id = ?", (record.audit_id,)).fetchone()
            self.state.link(conn, AUDIT_CHAIN, audit_kind(row[1], row[3]), record.audit_id, audit_content(tuple(row)))
            return True


class SqliteKillSwitchStore(KillSwitchStore):
    """Kill-switch state as one JSON row (id 1) of the state database."""

    def __init__(self, state: SqliteState) -> None:
        self.state = state

    @property
    def marker(self) -> Path:
        """The file `opx-learning init` writes beside the database; it outlives a deleted or truncated database."""
        return self.state.path.with_suffix(".init.json")

    def initialised(self) -> bool:
        """Whether this state was initialised once (the marker, the database file or an anchor for it exists)."""
        if self.marker.exists() or self.state.path.exists():
            return True
        try:
            return self.state.anchored_heads() is not None
        except StateMismatch:
            return True

    def mark_initialised(self, details: dict[str, Any]) -> None:
        """Write the marker file (JSON `details`)."""
        try:
            self.marker.write_text(json.dumps(details, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise BackendUnavailable(f"cannot write {self.marker}: {exc}") from exc

    def read(self) -> KillSwitchState:
        """The stored state, checked against the anchored chain heads and the last kill-switch audit record.

        Raises:
            StateMismatch: the database is not the anchored one (swapped, rolled back, rewritten) or its
                kill-switch row disagrees with the audit trail (edited).
            KillSwitchUnavailable: no state stored (file missing, empty, row gone), malformed or unreadable.
        """
        try:
            hint = LOST_HINT if self.initialised() else NOT_INITIALISED_HINT
        except (OSError, BackendUnavailable) as exc:
            raise KillSwitchUnavailable(f"kill switch state unavailable: {exc}; {ACCESS_HINT}") from exc
        try:
            with self.state.connect(anchored=True) as conn:
                problem = self.state.anchor_mismatch(conn, self.state.anchored_heads(conn))
                row = conn.execute("SELECT state FROM kill_switch WHERE id = 1").fetchone()
                links = [_link_from_row(AUDIT_CHAIN, link) for link in conn.execute(
                    f"SELECT {_LINK_COLUMNS} FROM chain_links WHERE chain = ? AND kind IN "
                    f"({', '.join('?' * len(KILL_SWITCH_KINDS))}) ORDER BY seq DESC LIMIT 20",
                    (AUDIT_CHAIN, *KILL_SWITCH_KINDS),
                )]
                records = {link.item_id: conn.execute(f"SELECT {_COLUMNS} FROM audit WHERE audit_id = ?",
                                                      (link.item_id,)).fetchone() for link in links}
        except StateMismatch:
            raise
        except BackendUnavailable as exc:
            if isinstance(exc.__cause__, PermissionError):
                hint = ACCESS_HINT
            raise KillSwitchUnavailable(f"kill switch state unavailable: {exc}; {hint}") from exc
        if problem:
            raise StateMismatch(f"{problem}; {ADOPT_HINT}")
        if row is None:
            raise KillSwitchUnavailable(
                f"kill switch state unavailable: no kill-switch state stored in {self.state.path}; {hint}"
            )
        try:
            state = KillSwitchState.from_dict(json.loads(row[0]))
        except (ValueError, KeyError, TypeError) as exc:
            raise KillSwitchUnavailable(
                f"kill switch state in {self.state.path} is malformed: {exc}; {LOST_HINT}"
            ) from exc
        check_against_trail(state, links, {key: stored_record(row) for key, row in records.items()},
                            str(self.state.path))
        return state

    def anchored_heads(self) -> dict[str, Head] | None:
        """The heads pinned in `anchor.db` for this database (None: none)."""
        heads = self.state.anchored_heads()
        return {chain: head for chain, (_, head) in heads.items()} if heads else None

    def anchor_state(self, entry: dict[str, Any]) -> dict[str, Head]:
        """Pin the database's current heads in `anchor.db` as a new epoch."""
        with SqliteState(self.state.path, self.state.timeout, create=True).connect() as conn:
            return self.state.write_anchor(conn, entry)

    def prepare_adoption(self) -> dict[str, Any]:
        """Recreate missing triggers (reporting them) and build the chain of a database that predates it."""
        if not self.state.path.exists():
            raise KillSwitchUnavailable(f"state database {self.state.path} does not exist; nothing to adopt; "
                                        f"{LOST_HINT}")
        try:
            with closing(sqlite3.connect(_uri(self.state.path, "rw"), uri=True, timeout=self.state.timeout)) as conn:
                legacy = SqliteState.legacy(conn)
                missing = [] if legacy else SqliteState.missing_triggers(conn)
            repaired = SqliteState(self.state.path, self.state.timeout, create=True)
            with repaired.connect(immediate=True) as conn:
                built = repaired.build_chain(conn) if legacy else 0
                if has_manifest_table(conn):
                    for statement in MANIFEST_SCHEMA:
                        conn.execute(statement)
        except (sqlite3.Error, BackendUnavailable) as exc:
            raise KillSwitchUnavailable(f"state database {self.state.path} cannot be adopted: {exc}; "
                                        f"{LOST_HINT}") from exc
        return {"triggers_recreated": missing, "predates_chain": legacy, "links_built": built}

    def raw_state(self) -> KillSwitchState:
        """The kill-switch row as stored, without the anchor and audit-trail checks."""
        try:
            with SqliteState(self.state.path, self.state.timeout, create=True).connect() as conn:
                row = conn.execute("SELECT state FROM kill_switch WHERE id = 1").fetchone()
            if row is None:
                raise KillSwitchUnavailable(f"no kill-switch state stored in {self.state.path}; {LOST_HINT}")
            return KillSwitchState.from_dict(json.loads(row[0]))
        except (ValueError, KeyError, TypeError, BackendUnavailable) as exc:
            if isinstance(exc, KillSwitchUnavailable):
                raise
            raise KillSwitchUnavailable(f"kill switch state in {self.state.path} cannot be read: {exc}; "
                                        f"{LOST_HINT}") from exc

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

