"""Dagster's SQLite event log with its engines kept and a batch of events written in one transaction.

This is the one module of opx_learning that relies on Dagster internals (an instance storage
class is Dagster's documented extension point, but its base class and helpers are not public
API). It relies on exactly these, all checked against Dagster 1.13 by
`opx_learning_tests/dagster/test_event_log_storage.py`, which runs the same runs on this class
and on Dagster's own and compares what they store:

- `dagster._core.storage.event_log.sqlite.sqlite_event_log`: the base class
  `SqliteEventLogStorage` and `INDEX_SHARD_NAME`; its private members `_engine` /
  `_connect` / `_initdb` / `_initialized_dbs` (overridden or used to keep one engine per
  file), `_db_lock` (replaced by a re-entrant lock), `_event_to_row`,
  `_store_asset_event_tags`, `_store_asset_event` and
  `_has_asset_key_index_cols_on_connection` (the per-event steps `store_event` takes,
  reused to store a batch);
- `dagster._core.storage.event_log.schema.SqlEventLogStorageTable`, `dagster._core.storage.sql.create_engine`,
  `dagster._core.storage.sqlite.SQLITE_BUSY_TIMEOUT_SECONDS`: the table and the engine settings
  Dagster's class uses;
- `dagster._core.events` (`DagsterEventType`, `ASSET_CHECK_EVENTS`) and
  `dagster._core.events.log.EventLogEntry`: the events stored;
- `dagster._config` (`Field`, `StringSource`, `IntSource`) and `dagster._serdes.ConfigurableClassData`:
  the storage's `dagster.yaml` block;
- `DagsterInstance._get_event_batch_size`, the method Dagster's instance asks whether (and how
  many) events of a batch to hand to `store_event_batch`. Dagster reads it from the
  environment variable `DAGSTER_EVENT_BATCH_SIZE` only; `register_instance` makes the instance
  that uses this storage answer with the storage's `event_batch_size` instead (the variable,
  when set, still wins), so batching is a setting of that instance, not of the process.

Dagster's `SqliteEventLogStorage` builds a new SQLAlchemy engine for every statement it
runs (so no statement is ever served from the compiled-SQL cache) and writes every event
in its own transactions. A run over a long range of partitions records several events
per partition (planned, materialized, check evaluated), so those fixed costs, not the
computation, set the run's time. This subclass changes only that:

- one engine per database file, kept for the life of the storage (run shards still
  open and close a connection per transaction, so the file the UI's log watcher
  follows is updated when each transaction ends, as with Dagster's own class);
- the instance using it hands over the batches Dagster forms (the planned events of a
  run, the per-partition materializations of a step) in batches of `event_batch_size`
  events (default 10000; `DAGSTER_EVENT_BATCH_SIZE` in the environment overrides it, `0`
  turns batching off);
- `store_event_batch` stores every event of the batch exactly as `store_event` would,
  inside one transaction on the run's shard and one on the index shard;
- in a batch, a run's asset materializations (observations, failures) that fall in the same
  millisecond are stored a millisecond apart (`distinct_milliseconds`): the UI's Events tab
  keys an asset's events by run, millisecond and kind, so a range run's partitions written
  within one millisecond would otherwise show as one row (7 rows for a 94-day range). The
  shift is at most one millisecond per event of the batch, and the order is kept.

It reads and writes the same files in the same layout, so an instance can switch between
the two classes at any time. Configure it in `dagster.yaml`:

    event_log_storage:
      module: opx_learning.app.event_log
      class: BatchingSqliteEventLogStorage
      # config:
      #   event_batch_size: 10000
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from dagster._config import Field, IntSource, StringSource
from dagster._core.events import ASSET_CHECK_EVENTS, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
DEFAULT_BATCH_SIZE = 10000
# Engines kept at once (the index plus the most recently used run shards).
MAX_ENGINES = 32
# Rows of one multi-row INSERT (7 bound values a row, well under SQLite's 32,766).
_ROWS_PER_INSERT = 1000
_PLAIN_ASSET_EVENTS = frozenset(
    {
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_OBSERVATION,
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    }
)


def _is_plain_asset_event(event: EventLogEntry) -> bool:
    """An asset event `store_event` stores in the run shard, the index, the asset's tags and entry, and nowhere else."""
    dagster_event = event.dagster_event
    return bool(dagster_event and dagster_event.event_type in _PLAIN_ASSET_EVENTS and dagster_event.asset_key)


def event_batch_size(configured: int) -> int:
    """The batch size an instance using this storage gives Dagster: `DAGSTER_EVENT_BATCH_SIZE` when set, else `configured`."""
    raw = os.environ.get(BATCH_SIZE_ENV, "").strip()
    return int(raw) if raw else configured


def default_base_dir() -> str:
    """Where Dagster's default SQLite event log lives: `$DAGSTER_HOME/history/runs`."""
    home = os.environ.get("DAGSTER_HOME", "").strip()
    if not home:
        raise ValueError(
            "DAGSTER_HOME is not set: the event log storage needs `base_dir` or DAGSTER_HOME"
        )
    return os.path.join(os.path.abspath(os.path.expanduser(home)), "history", "runs")


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """SQLite event log that keeps one engine per database file and stores a batch of events in one transaction."""

    def __init__(
        self,
        base_dir: str | None = None,
        inst_data: ConfigurableClassData | None = None,
        event_batch_size: int = DEFAULT_BATCH_SIZE,
    ):
        if event_batch_size < 0:
            raise ValueError(f"event_batch_size must be 0 (no batches) or more, not {event_batch_size}")
        self.event_batch_size = event_batch_size
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._held = threading.local()
        self._tables: set[str] = set()  # index tables known to exist (a table, once there, stays)
        self._asset_index_cols = False
        super().__init__(base_dir or default_base_dir(), inst_data)
        # Re-entrant: inside a batch, the per-event code opens the shard the batch already holds.
        self._db_lock = threading.RLock()  # type: ignore[assignment]

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        """`base_dir` (default `$DAGSTER_HOME/history/runs`, Dagster's own location) and `event_batch_size` (default 10000)."""
        return {
            "base_dir": Field(StringSource, is_required=False),
            "event_batch_size": Field(IntSource, is_required=False, default_value=DEFAULT_BATCH_SIZE),
        }

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> BatchingSqliteEventLogStorage:
        """Build the storage from its `dagster.yaml` block."""
        return cls(
            inst_data=inst_data,
            base_dir=config_value.get("base_dir"),
            event_batch_size=config_value.get("event_batch_size", DEFAULT_BATCH_SIZE),
        )

    def register_instance(self, instance: Any) -> None:
        """Bind to the instance (as Dagster does) and make it hand this storage its events in batches.

        Dagster's instance asks its own `_get_event_batch_size()`, which reads only the
        environment; the instance that uses this storage answers with `event_batch_size`
        (the environment variable, when set, still wins). No other instance, and nothing
        of the process, changes. The answer holds no reference to the instance or storage.
        """
        super().register_instance(instance)
        configured = self.event_batch_size
        instance._get_event_batch_size = lambda: event_batch_size(configured)

    def _engine(self, shard: str) -> Engine:
        if (
            self._engines_pid != os.getpid()
        ):  # a forked child must not share the parent's pools
            self._engines = OrderedDict()
            self._engines_pid = os.getpid()
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = create_engine(
            self.conn_string_for_shard(shard),
            # A run shard's connection closes after each transaction, which checkpoints the WAL
            # into the file the UI's log watcher follows; the index keeps its connection.
            **({} if shard == INDEX_SHARD_NAME else {"poolclass": NullPool}),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        )
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        while len(self._engines) > MAX_ENGINES:
            _, evicted = self._engines.popitem(last=False)
            evicted.dispose()
        return engine

    def has_table(self, table_name: str) -> bool:
        """Whether the index has the table (asked once per event by Dagster; a table, once there, stays)."""
        if table_name not in self._tables and super().has_table(table_name):
            self._tables.add(table_name)
        return table_name in self._tables

    def _held_connections(self) -> dict[str, Connection]:
        held = getattr(self._held, "connections", None)
        if held is None:
            held = self._held.connections = {}
        return held

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:  # type: ignore[override]
        held = self._held_connections()
        if shard in held:
            yield held[shard]
            return
        with self._db_lock, self._engine(shard).connect() as conn, conn.begin():
            held[shard] = conn
            try:
                yield conn
            finally:
                del held[shard]

    def store_event(self, event: EventLogEntry) -> None:
        """Store one event as Dagster does; an asset check's two index writes share one transaction."""
        dagster_event = event.dagster_event
        if dagster_event is None or dagster_event.event_type not in ASSET_CHECK_EVENTS:
            super().store_event(event)
            return
        with self._db_lock, self.index_connection():
            super().store_event(event)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store the events as `store_event` does, in one transaction per shard (all or none of the batch).

        Consecutive asset materializations, observations and planned events (a range run's
        per-partition events) are inserted with one statement per shard; the asset's entry is
        updated from the last event of each kind, the state `store_event` one by one leaves.
        Any other event is stored by `store_event` itself, inside the same transactions.
        """
        if len(events) < 2:
            super().store_event_batch(events)
            return
        events = distinct_milliseconds(events)
        with ExitStack() as stack:
            stack.enter_context(self._db_lock)
            index = stack.enter_context(self.index_connection())
            for run_id in dict.fromkeys(event.run_id for event in events):
                stack.enter_context(self.run_connection(run_id))
            for plain, group in itertools.groupby(events, key=_is_plain_asset_event):
                if plain:
                    self._store_asset_events(index, list(group))
                else:
                    for event in group:
                        self.store_event(event)

    def _store_asset_events(self, index: Connection, events: list[EventLogEntry]) -> None:
        held = self._held_connections()
        rows = [self._event_to_row(event) for event in events]
        for run_id in dict.fromkeys(event.run_id for event in events):
            held[run_id].execute(SqlEventLogStorageTable.insert(), [row for row in rows if row["run_id"] == run_id])
        ids: list[int] = []
        for begin in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[begin : begin + _ROWS_PER_INSERT]
            inserted = index.execute(SqlEventLogStorageTable.insert().values(chunk).returning(SqlEventLogStorageTable.c.id))
            # One statement inside one write transaction: the ids ascend in the order of the rows.
            ids.extend(sorted(row[0] for row in inserted))
        self._store_asset_event_tags(index, events, ids)
        last: dict[tuple[str, str], int] = {}
        for position, event in enumerate(events):
            last[(event.get_dagster_event().asset_key.to_string(), event.get_dagster_event().event_type_value)] = position
        for position in sorted(last.values()):
            self._store_asset_event(index, events[position], ids[position])

    def _has_asset_key_index_cols_on_connection(self, conn: Connection) -> bool:
        """Whether the asset table has its index columns (asked once per asset event by Dagster; once there, they stay)."""
        if not self._asset_index_cols:
            self._asset_index_cols = super()._has_asset_key_index_cols_on_connection(conn)
        return self._asset_index_cols

    def _dispose_engines(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        """Drop the kept engines before Dagster deletes the files they point at."""
        self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        """Stop the watchers and close the kept engines."""
        super().dispose()
        self._dispose_engines()


# The UI lists an asset's events keyed by run, millisecond timestamp and event kind, so events of one
# run stored within the same millisecond (a range run's per-partition materializations) collapse into one.
_LISTED_KINDS = frozenset(
    {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION, DagsterEventType.ASSET_FAILED_TO_MATERIALIZE}
)


def distinct_milliseconds(events: Sequence[EventLogEntry]) -> list[EventLogEntry]:
    """The batch with each run's listed asset events (materializations, observations, failures) a millisecond apart.

    An event that falls in the same millisecond as the previous listed event of its run and kind
    is moved to the next free millisecond (a 94-partition range moves its last event by at most
    94 ms); order is kept and every other event is unchanged.
    """
    last: dict[tuple[str, DagsterEventType], int] = {}
    result = []
    for event in events:
        dagster_event = event.dagster_event
        kind = dagster_event.event_type if dagster_event is not None else None
        if kind in _LISTED_KINDS:
            key = (event.run_id, kind)
            millis = int(event.timestamp * 1000)
            if key in last and millis <= last[key]:
                millis = last[key] + 1
                event = event._replace(timestamp=(millis + 0.5) / 1000)  # the middle of that millisecond
            last[key] = millis
        result.append(event)
    return result
