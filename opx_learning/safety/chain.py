"""Hash chains over the audit trail and the threshold versions, and the checks run on them (docs/integrity.md#hash-chain).

Every write of an audit record (its creation and each later transition) and every approved
threshold version appends one link to its chain: `(seq, kind, item_id, content_hash,
prev_hash, link_hash)`, where `content_hash` is the SHA-256 of the stored content in
canonical JSON and `link_hash` the SHA-256 of the link's own fields, so each link commits
to every link before it. The head `(seq, link_hash)` of each chain is anchored outside the
store it protects (`anchor.db` locally, an S3 object on aws); a store whose chain does not
contain the anchored head was swapped, rolled back or rewritten. This module is
backend-neutral: the backends read links and contents, these functions judge them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opx_learning.core.windows import iso, to_utc
from opx_learning.safety.models import (
    AuditRecord,
    AuditStatus,
    KillSwitchState,
    KillSwitchUnavailable,
    OperationType,
)

AUDIT_CHAIN = "audit"
THRESHOLD_CHAIN = "thresholds"
CHAINS = (AUDIT_CHAIN, THRESHOLD_CHAIN)
AUDIT_TAMPERED = "AUDIT_TAMPERED"
STATE_MISMATCH = "STATE_MISMATCH"
THRESHOLD_KIND = "THRESHOLD_VERSION"
ADOPT_ACTION = "ADOPT"
_TERMINAL = tuple(status.value for status in AuditStatus if status.terminal)
_KILL_SWITCH_OPERATIONS = (OperationType.KILL_SWITCH_DISABLE.value, OperationType.KILL_SWITCH_ENABLE.value)
KILL_SWITCH_KINDS = tuple(
    f"{operation}:{status}" for operation in _KILL_SWITCH_OPERATIONS for status in ("RUNNING", "SUCCESS", "FAILED")
)


class StateMismatch(KillSwitchUnavailable):
    """The state disagrees with its anchor or its own audit trail; callers fail closed until it is restored or adopted."""

    def __init__(self, message: str) -> None:
        super().__init__(message if message.startswith(STATE_MISMATCH) else f"{STATE_MISMATCH}: {message}")


class ChainTampered(StateMismatch):
    """A record, link or protecting trigger of the state was changed outside the store's own writes."""

    def __init__(self, message: str) -> None:
        text = message if message.startswith(AUDIT_TAMPERED) else f"{AUDIT_TAMPERED}: {message}"
        super().__init__(f"{STATE_MISMATCH}: {text}")


ADOPT_HINT = (
    "restore the state from a backup, or accept it as it is with `opx-learning init --adopt` "
    "(EMERGENCY_OVERRIDE only, audited; re-anchors to its current chain head)"
)


def canonical(value: Any) -> bytes:
    """Canonical JSON (sorted keys, no spaces, UTF-8) of a JSON-safe value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(value: Any) -> str:
    """SHA-256 hex of the canonical JSON of `value`."""
    return hashlib.sha256(canonical(value)).hexdigest()


def genesis(state_id: str, chain: str) -> str:
    """The `prev_hash` of a chain's first link, bound to the identity of the state it belongs to."""
    return content_hash({"genesis": chain, "state_id": state_id})


def audit_kind(operation: str, status: str) -> str:
    """The link kind of one audit write: `OPERATION:STATUS` after the write."""
    return f"{operation}:{status}"


@dataclass(frozen=True)
class Link:
    """One link of a chain as stored."""

    chain: str
    seq: int
    kind: str
    item_id: str
    content_hash: str
    prev_hash: str
    link_hash: str

    @staticmethod
    def compute(chain: str, seq: int, kind: str, item_id: str, content: str, prev: str) -> str:
        """The `link_hash` of these fields."""
        return content_hash(
            {"chain": chain, "seq": seq, "kind": kind, "id": item_id, "content_hash": content, "prev_hash": prev}
        )

    @classmethod
    def make(cls, chain: str, seq: int, kind: str, item_id: str, content: str, prev: str) -> Link:
        """A new link with its hash."""
        return cls(chain, seq, kind, item_id, content, prev, cls.compute(chain, seq, kind, item_id, content, prev))

    @property
    def intact(self) -> bool:
        """Whether `link_hash` matches the link's fields."""
        return self.link_hash == self.compute(
            self.chain, self.seq, self.kind, self.item_id, self.content_hash, self.prev_hash
        )

    @property
    def terminal(self) -> bool:
        """Whether this link records an audit record reaching a terminal status."""
        return self.kind.rsplit(":", 1)[-1] in _TERMINAL

    def head(self) -> Head:
        """This link as a chain head."""
        return Head(self.chain, self.seq, self.link_hash)


@dataclass(frozen=True)
class Head:
    """The last link of a chain: `(seq, link_hash)`; seq 0 is the empty chain (its genesis hash)."""

    chain: str
    seq: int
    link_hash: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (alert details, check metadata, audit results)."""
        return {"chain": self.chain, "seq": self.seq, "link_hash": self.link_hash}

    def __str__(self) -> str:
        return f"{self.chain}@{self.seq}:{self.link_hash[:16]}"


@dataclass(frozen=True)
class Problem:
    """One finding of a chain check: where (a link or a record), what, and the digest of what was read."""

    location: str
    problem: str
    evidence: str = ""


def walk(chain: str, links: Sequence[Link], first_prev: str) -> list[Problem]:
    """Problems in the links of one chain, ordered by `seq`: gaps, edits, reordering, links after a terminal one."""
    problems: list[Problem] = []
    expected, prev = 1, first_prev
    terminal_at: dict[str, int] = {}
    for link in links:
        where = f"{chain} link {link.seq}"
        if link.seq != expected:
            missing = f"{expected}" if link.seq == expected + 1 else f"{expected}..{link.seq - 1}"
            problems.append(Problem(where, f"gap: link(s) {missing} of the {chain} chain are missing (deleted)"))
        elif link.prev_hash != prev:
            problems.append(Problem(where, f"link {link.seq} does not follow link {link.seq - 1} "
                                           "(reordered, inserted or rewritten history)", link.prev_hash))
        if not link.intact:
            problems.append(Problem(where, f"link {link.seq} was edited: its hash does not match its fields",
                                    link.link_hash))
        if link.item_id in terminal_at:
            problems.append(Problem(where, f"{link.item_id} was rewritten after it became terminal at link "
                                           f"{terminal_at[link.item_id]}"))
        if link.terminal:
            terminal_at.setdefault(link.item_id, link.seq)
        expected, prev = link.seq + 1, link.link_hash
    return problems


def compare(chain: str, links: Iterable[Link], contents: Mapping[str, str], label: str) -> list[Problem]:
    """Problems between the links and the stored items: edited items, items without a link, links without an item.

    Args:
        chain: chain name.
        links: the chain's links (any order).
        contents: item id -> content hash of the item as stored now.
        label: what an item is, for messages (`audit record`, `threshold version`).
    """
    last: dict[str, Link] = {}
    for link in links:
        if link.item_id not in last or link.seq > last[link.item_id].seq:
            last[link.item_id] = link
    problems: list[Problem] = []
    for item_id, link in sorted(last.items(), key=lambda pair: pair[1].seq):
        if item_id not in contents:
            problems.append(Problem(f"{chain} link {link.seq}", f"{label} {item_id} has a link but no longer exists "
                                                               "(deleted)", link.content_hash))
        elif contents[item_id] != link.content_hash:
            problems.append(Problem(f"{label} {item_id}", f"{label} {item_id} was changed after its last link "
                                                          f"({chain} link {link.seq}, {link.kind})", contents[item_id]))
    for item_id in sorted(set(contents) - set(last)):
        problems.append(Problem(f"{label} {item_id}", f"{label} {item_id} has no link in the {chain} chain "
                                                      "(inserted outside the store)", contents[item_id]))
    return problems


def anchor_problem(anchor: Head, at_anchor: Link | None, last: Head, where: str) -> str | None:
    """Why a chain does not contain its anchored head (None when it does).

    Args:
        anchor: the head pinned by the anchor.
        at_anchor: the store's link at the anchor's seq (None: there is none).
        last: the store's current head.
        where: the anchor's location, for the message.
    """
    if anchor.seq == 0:
        return None
    if at_anchor is None:
        return (f"the {anchor.chain} chain ends at link {last.seq} but {where} pins link {anchor.seq} "
                "(rolled back to an older copy, truncated or swapped)")
    if at_anchor.link_hash != anchor.link_hash:
        return (f"{anchor.chain} link {anchor.seq} is {at_anchor.link_hash[:16]}… but {where} pins "
                f"{anchor.link_hash[:16]}… (history rewritten or another state swapped in)")
    return None


def expected_enabled(
    newest_first: Sequence[Link],
    until_of: Callable[[str], datetime | None],
    now: datetime,
) -> tuple[set[bool], Link | None]:
    """Which kill-switch states the audit chain allows, from the newest kill-switch links.

    Walks the kill-switch records (newest write first): a RUNNING one (a change in flight) or
    one ended FAILED allows the state it asked for and the walk goes on; the first SUCCESS
    decides. A SUCCESS disable whose `until` has passed also allows ENABLED (the planned
    re-enable writes the state before its record). No kill-switch record: ENABLED (as initialised).

    Args:
        newest_first: links of kinds `KILL_SWITCH_*:{RUNNING,SUCCESS,FAILED}`, newest first.
        until_of: the `until` of a disable record (by audit id), None when it has none.
        now: the reading time.

    Returns:
        The allowed `enabled` values and the deciding SUCCESS link (None: no record decided).
    """
    allowed: set[bool] = set()
    seen: set[str] = set()
    for link in newest_first:
        if link.item_id in seen:
            continue
        seen.add(link.item_id)
        operation, status = link.kind.rsplit(":", 1)
        enabled = operation == OperationType.KILL_SWITCH_ENABLE.value
        allowed.add(enabled)
        if status == AuditStatus.SUCCESS.value:
            if not enabled:
                until = until_of(link.item_id)
                if until is not None and until <= now:
                    allowed.add(True)
            return allowed, link
    if not newest_first or len(allowed) == 0:
        return {True}, None
    return allowed | {True}, None


def record_values(record: AuditRecord) -> tuple:
    """An audit record as its 14 stored column values (the form both backends hash)."""
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


def audit_content(values: tuple) -> list[Any]:
    """What an audit link's content hash covers: the record's 14 stored column values, in column order."""
    return list(values)


def stored_record(values: tuple | None) -> tuple[str, dict[str, Any]] | None:
    """The content hash and parameters of a stored audit record's values (None: no record)."""
    if values is None:
        return None
    try:
        parameters = json.loads(values[7])
    except (TypeError, ValueError):
        parameters = {}
    return content_hash(audit_content(tuple(values))), parameters if isinstance(parameters, dict) else {}


def check_against_trail(
    state: KillSwitchState,
    links: list[Link],
    records: Mapping[str, tuple[str, dict[str, Any]] | None],
    where: str,
) -> None:
    """Refuse a kill-switch state that the last kill-switch audit records do not allow.

    Args:
        state: the stored state.
        links: the newest kill-switch links of the audit chain, newest first.
        records: audit id -> (content hash, parameters) of the record as stored now (None: missing).
        where: the store, for messages.

    Raises:
        ChainTampered: a consulted kill-switch record was changed or deleted after its link.
        StateMismatch: the state is not one the audit trail allows.
    """
    for link in _first_per_item(links):
        stored = records.get(link.item_id)
        if stored is None:
            raise ChainTampered(f"kill-switch audit record {link.item_id} in {where} was deleted "
                                f"(audit link {link.seq} remains); {ADOPT_HINT}")
        if stored[0] != link.content_hash:
            raise ChainTampered(f"kill-switch audit record {link.item_id} in {where} was changed after its "
                                f"audit link {link.seq}; {ADOPT_HINT}")

    def until_of(audit_id: str) -> datetime | None:
        stored = records.get(audit_id)
        until = stored[1].get("until") if stored else None
        try:
            return to_utc(until) if until else None
        except ValueError:
            return None

    allowed, deciding = expected_enabled(links, until_of, datetime.now(UTC))
    if state.enabled in allowed:
        return
    shown = "ENABLED (operations allowed)" if state.enabled else "ACTIVE (operations blocked)"
    expected = "ENABLED" if True in allowed else "ACTIVE"
    by = (f"the last kill-switch audit record {deciding.item_id} ({deciding.kind}, audit link {deciding.seq})"
          if deciding else "the audit trail (no kill-switch change recorded)")
    raise StateMismatch(f"the kill-switch row in {where} says {shown} but {by} says {expected} "
                        f"(the row was edited outside the audited commands); {ADOPT_HINT}")


def _first_per_item(links: list[Link]) -> list[Link]:
    seen: set[str] = set()
    firsts = []
    for link in links:
        if link.item_id not in seen:
            seen.add(link.item_id)
            firsts.append(link)
    return firsts


__all__ = [
    "ADOPT_ACTION",
    "ADOPT_HINT",
    "AUDIT_CHAIN",
    "AUDIT_TAMPERED",
    "CHAINS",
    "STATE_MISMATCH",
    "THRESHOLD_CHAIN",
    "ChainTampered",
    "Head",
    "Link",
    "Problem",
    "StateMismatch",
    "anchor_problem",
    "audit_content",
    "audit_kind",
    "canonical",
    "check_against_trail",
    "compare",
    "content_hash",
    "expected_enabled",
    "genesis",
    "record_values",
    "stored_record",
    "walk",
]
