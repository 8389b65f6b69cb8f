"""Where threshold proposals and the approved, versioned threshold sets live (docs/thresholds.md).

Local backend: two tables of the state database (`state.db`), append-only like the audit
trail, enforced by triggers: `threshold_proposals` (a row changes only while PENDING, is
never deleted) and `threshold_versions` (one row per approved version, never changed or
deleted); the current set is the highest version.

AWS backend: items of the config table (`opx-automation-config`):
- proposals: `PK = "THRESHOLDS#PROPOSALS"`, `SK = "PROPOSAL#<id>"` (one partition, so they
  are listed with a Query, never a Scan);
- approved versions: `PK = "THRESHOLDS#VERSIONS"`, `SK = "VERSION#<n, 8 digits>"`;
- the current set: `PK = "CONFIG#THRESHOLDS"`, `SK = "METADATA"`.

A decision is one atomic write (a SQLite `BEGIN IMMEDIATE` transaction, or a DynamoDB
`TransactWriteItems` of conditional puts): the proposal must still be PENDING and, for an
approval, the current version must still be the one the approver saw. So two approvals can
never both win, and two approved sets can never get the same version.

Each approved version is also a link of the threshold hash chain, written in the same
transaction (`opx_learning.safety.chain`); `current` and `history` refuse to serve a version
that does not match its link (`ChainTampered`).
"""

from __future__ import annotations

import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from opx_learning.core.windows import iso, to_utc
from opx_learning.safety.chain import (
    THRESHOLD_CHAIN,
    THRESHOLD_KIND,
    ChainTampered,
    content_hash,
)
from opx_learning.safety.models import BackendUnavailable, Principal


class ProposalStatus(StrEnum):
    """Where a proposal stands; PENDING moves to exactly one of APPROVED or REJECTED."""

    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


def _principal(data: Mapping[str, Any] | None) -> Principal | None:
    return Principal.from_dict(dict(data)) if data else None


def _instant(value: str | None) -> datetime | None:
    return to_utc(value) if value else None


@dataclass(frozen=True)
class ThresholdProposal:
    """A proposed change of the confidence thresholds, taken from one calibration's `recommended_thresholds`.

    Attributes:
        proposal_id: short unique id (`tp-` and 10 hex digits).
        status: PENDING, APPROVED or REJECTED.
        thresholds: band boundary (`"0.2"` … `"0.8"`) -> smallest raw confidence reaching it (or None).
        source: the calibration it came from (`calibration_id`, window, asset, partition).
        proposed_by / proposed_at / proposal_audit_id: who proposed it, when, and the audit record.
        base_version: the approved version current when it was proposed (0: none).
        decided_by / decided_at / decision_audit_id: who approved or rejected it, when, and the audit record.
        reason: the rejection reason.
        version: the approved version it became (approvals only).
    """

    proposal_id: str
    status: ProposalStatus
    thresholds: dict[str, float | None]
    source: dict[str, Any]
    proposed_by: Principal
    proposed_at: datetime
    proposal_audit_id: str
    base_version: int = 0
    decided_by: Principal | None = None
    decided_at: datetime | None = None
    decision_audit_id: str | None = None
    reason: str | None = None
    version: int | None = None

    @property
    def approver(self) -> Principal | None:
        """The approving principal (None unless APPROVED)."""
        return self.decided_by if self.status is ProposalStatus.APPROVED else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: `id`, `status`, `proposer`, `approver`, `thresholds`, `version` first, then the details."""
        return {
            "id": self.proposal_id,
            "status": self.status.value,
            "proposer": self.proposed_by.principal,
            "approver": self.approver.principal if self.approver else None,
            "thresholds": dict(self.thresholds),
            "version": self.version,
            "proposed_by": self.proposed_by.to_dict(),
            "proposed_at": iso(self.proposed_at),
            "decided_by": self.decided_by.to_dict() if self.decided_by else None,
            "decided_at": iso(self.decided_at) if self.decided_at else None,
            "reason": self.reason,
            "base_version": self.base_version,
            "source": dict(self.source),
            "audit_ids": {"proposal": self.proposal_audit_id, "decision": self.decision_audit_id},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThresholdProposal:
        """Inverse of `to_dict`."""
        audit_ids = data.get("audit_ids") or {}
        return cls(
            proposal_id=str(data["id"]),
            status=ProposalStatus(data["status"]),
            thresholds=dict(data["thresholds"]),
            source=dict(data.get("source") or {}),
            proposed_by=Principal.from_dict(data["proposed_by"]),
            proposed_at=to_utc(data["proposed_at"]),
            proposal_audit_id=str(audit_ids.get("proposal")),
            base_version=int(data.get("base_version") or 0),
            decided_by=_principal(data.get("decided_by")),
            decided_at=_instant(data.get("decided_at")),
            decision_audit_id=audit_ids.get("decision"),
            reason=data.get("reason"),
            version=None if data.get("version") is None else int(data["version"]),
        )


@dataclass(frozen=True)
class ThresholdSet:
    """One approved version of the thresholds (the current one is the highest version)."""

    version: int
    thresholds: dict[str, float | None]
    proposal_id: str
    approved_by: Principal
    approved_at: datetime
    proposed_by: Principal
    audit_id: str
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe snake_case form (CLI `--json`)."""
        return {
            "version": self.version,
            "thresholds": dict(self.thresholds),
            "approver": self.approved_by.principal,
            "approved_by": self.approved_by.to_dict(),
            "approved_at": iso(self.approved_at),
            "proposal_id": self.proposal_id,
            "proposer": self.proposed_by.principal,
            "proposed_by": self.proposed_by.to_dict(),
            "audit_id": self.audit_id,
            "source": dict(self.source),
        }

    def to_rest(self) -> dict[str, Any]:
        """The `GET /learning/thresholds` body (camelCase)."""
        return {
            "version": self.version,
            "thresholds": dict(self.thresholds),
            "approver": self.approved_by.principal,
            "approvedBy": self.approved_by.to_dict(),
            "approvedAt": iso(self.approved_at),
            "proposalId": self.proposal_id,
            "proposer": self.proposed_by.principal,
            "auditId": self.audit_id,
            "calibrationId": self.source.get("calibration_id"),
            "source": dict(self.source),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThresholdSet:
        """Inverse of `to_dict`."""
        return cls(
            version=int(data["version"]),
            thresholds=dict(data["thresholds"]),
            proposal_id=str(data["proposal_id"]),
            approved_by=Principal.from_dict(data["approved_by"]),
            approved_at=to_utc(data["approved_at"]),
            proposed_by=Principal.from_dict(data["proposed_by"]),
            audit_id=str(data["audit_id"]),
            source=dict(data.get("source") or {}),
        )


class ThresholdStore(ABC):
    """Proposals and approved versions; decisions are atomic conditional writes."""

    location: str = ""

    @abstractmethod
    def create(self, proposal: ThresholdProposal) -> None:
        """Store a new PENDING proposal (an existing id is refused with ValueError)."""

    @abstractmethod
    def get(self, proposal_id: str) -> ThresholdProposal | None:
        """The proposal with this id, or None."""

    @abstractmethod
    def proposals(self) -> list[ThresholdProposal]:
        """Every proposal, oldest first."""

    @abstractmethod
    def history(self) -> list[ThresholdSet]:
        """Every approved version, oldest first."""

    @abstractmethod
    def current(self) -> ThresholdSet | None:
        """The highest approved version, or None before the first approval."""

    @abstractmethod
    def decide(self, decided: ThresholdProposal, approved: ThresholdSet | None, expected_version: int) -> bool:
        """Atomically record a decision: False (nothing written) if the proposal is no longer PENDING or,
        for an approval, the current version is no longer `expected_version`."""


_SQLITE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS threshold_proposals (
        proposal_id TEXT PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('PENDING', 'APPROVED', 'REJECTED')),
        proposed_at TEXT NOT NULL,
        doc TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS threshold_versions (
        version INTEGER PRIMARY KEY CHECK (version >= 1),
        proposal_id TEXT NOT NULL UNIQUE,
        approved_at TEXT NOT NULL,
        doc TEXT NOT NULL
    )""",
    """CREATE TRIGGER IF NOT EXISTS threshold_proposals_no_delete BEFORE DELETE ON threshold_proposals
    BEGIN SELECT RAISE(ABORT, 'threshold proposals cannot be deleted'); END""",
    """CREATE TRIGGER IF NOT EXISTS threshold_proposals_decided_once BEFORE UPDATE ON threshold_proposals
    WHEN OLD.status != 'PENDING' OR NEW.proposal_id != OLD.proposal_id
    BEGIN SELECT RAISE(ABORT, 'a decided threshold proposal cannot change'); END""",
    """CREATE TRIGGER IF NOT EXISTS threshold_versions_no_delete BEFORE DELETE ON threshold_versions
    BEGIN SELECT RAISE(ABORT, 'approved threshold versions cannot be deleted'); END""",
    """CREATE TRIGGER IF NOT EXISTS threshold_versions_no_update BEFORE UPDATE ON threshold_versions
    BEGIN SELECT RAISE(ABORT, 'approved threshold versions cannot change'); END""",
)


_VERSION_COLUMNS = "version, proposal_id, approved_at, doc"


def threshold_content(version: int, proposal_id: str, approved_at: str, doc: str) -> list[Any]:
    """What a threshold link's content hash covers: the version's stored columns, in order."""
    return [version, proposal_id, approved_at, doc]


class SqliteThresholdStore(ThresholdStore):
    """Proposals and versions in the local state database (it must have been initialised)."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.location = f"local: {state.path}"

    def _connect(self, *, immediate: bool = False, anchored: bool = False) -> Any:
        # The tables and their triggers are created with the state (`opx-learning init`); a missing
        # trigger is reported by the state's open, never recreated here.
        return self.state.connect(immediate=immediate, anchored=anchored)

    def _verified(self, conn: Any, rows: list[tuple]) -> list[ThresholdSet]:
        """The versions of `rows`, each checked against its link of the threshold chain.

        Raises:
            ChainTampered: a version was edited or inserted outside an approval, or the newest one is not the
                chain's last link.
        """
        where = self.state.path
        for version, proposal_id, approved_at, doc in rows:
            link = self.state.last_link_of(conn, THRESHOLD_CHAIN, str(version))
            if link is None:
                raise ChainTampered(f"threshold version {version} in {where} has no link in the threshold chain "
                                    "(inserted outside an approval); not served")
            if link.content_hash != content_hash(threshold_content(version, proposal_id, approved_at, doc)):
                raise ChainTampered(f"threshold version {version} in {where} was changed after its approval "
                                    f"(threshold link {link.seq}); not served")
        if rows:
            last = self.state.last_link(conn, THRESHOLD_CHAIN)
            newest = max(row[0] for row in rows)
            if last is not None and last.item_id != str(newest):
                raise ChainTampered(f"threshold version {newest} in {where} is not the last approved version "
                                    f"(the threshold chain ends with version {last.item_id}); not served")
        return [ThresholdSet.from_dict(json.loads(row[3])) for row in rows]

    def create(self, proposal: ThresholdProposal) -> None:
        """Insert a PENDING proposal."""
        try:
            with self._connect(immediate=True) as conn:
                conn.execute(
                    "INSERT INTO threshold_proposals (proposal_id, status, proposed_at, doc) VALUES (?, ?, ?, ?)",
                    (proposal.proposal_id, proposal.status.value, iso(proposal.proposed_at),
                     json.dumps(proposal.to_dict(), sort_keys=True)),
                )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"proposal_id: {proposal.proposal_id!r} exists already") from exc

    def get(self, proposal_id: str) -> ThresholdProposal | None:
        """The proposal with this id, or None."""
        with self._connect() as conn:
            row = conn.execute("SELECT doc FROM threshold_proposals WHERE proposal_id = ?", (proposal_id,)).fetchone()
        return ThresholdProposal.from_dict(json.loads(row[0])) if row else None

    def proposals(self) -> list[ThresholdProposal]:
        """Every proposal, oldest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT doc FROM threshold_proposals ORDER BY proposed_at, proposal_id").fetchall()
        return [ThresholdProposal.from_dict(json.loads(row[0])) for row in rows]

    def history(self) -> list[ThresholdSet]:
        """Every approved version, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {_VERSION_COLUMNS} FROM threshold_versions ORDER BY version").fetchall()
            return self._verified(conn, rows)

    def current(self) -> ThresholdSet | None:
        """The highest approved version, or None."""
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM threshold_versions ORDER BY version DESC LIMIT 1"
            ).fetchone()
            return self._verified(conn, [row])[0] if row else None

    def decide(self, decided: ThresholdProposal, approved: ThresholdSet | None, expected_version: int) -> bool:
        """One `BEGIN IMMEDIATE` transaction: check PENDING and the current version, then write."""
        with self._connect(immediate=True, anchored=True) as conn:
            row = conn.execute(
                "SELECT status FROM threshold_proposals WHERE proposal_id = ?", (decided.proposal_id,)
            ).fetchone()
            if row is None or row[0] != ProposalStatus.PENDING.value:
                return False
            if approved is not None:
                (current,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM threshold_versions").fetchone()
                if current != expected_version:
                    return False
                values = (approved.version, approved.proposal_id, iso(approved.approved_at),
                          json.dumps(approved.to_dict(), sort_keys=True))
                conn.execute(
                    "INSERT INTO threshold_versions (version, proposal_id, approved_at, doc) VALUES (?, ?, ?, ?)",
                    values,
                )
                self.state.link(conn, THRESHOLD_CHAIN, THRESHOLD_KIND, str(approved.version), threshold_content(*values))
            conn.execute(
                "UPDATE threshold_proposals SET status = ?, doc = ? WHERE proposal_id = ? AND status = 'PENDING'",
                (decided.status.value, json.dumps(decided.to_dict(), sort_keys=True), decided.proposal_id),
            )
        return True


class _Lost(Exception):
    """A decision's own condition failed (another decision won), so nothing was written."""


PROPOSALS_PK = "THRESHOLDS#PROPOSALS"
VERSIONS_PK = "THRESHOLDS#VERSIONS"
CURRENT_KEY = {"PK": {"S": "CONFIG#THRESHOLDS"}, "SK": {"S": "METADATA"}}


class DynamoThresholdStore(ThresholdStore):
    """Proposals, versions and the current set as items of the DynamoDB config table."""

    def __init__(self, client: Any, table: str, region: str = "", chain: Any = None) -> None:
        self.client = client
        self.table = table
        self.location = f"aws: DynamoDB table {table}" + (f" in {region}" if region else "")
        self.chain = chain

    def _verified(self, items: list[tuple[int, str]]) -> list[ThresholdSet]:
        """The versions `(version, doc)`, each checked against its link; the newest must be the chain's head.

        Raises:
            ChainTampered: a version was edited or inserted outside an approval.
        """
        if self.chain is None or not items:
            return [ThresholdSet.from_dict(json.loads(doc)) for _, doc in items]
        links = {link.item_id: link for link in self.chain.links(THRESHOLD_CHAIN)}
        for version, doc in items:
            link = links.get(str(version))
            if link is None:
                raise ChainTampered(f"threshold version {version} in {self.table} has no link in the threshold "
                                    "chain (inserted outside an approval); not served")
            if link.content_hash != content_hash([version, doc]):
                raise ChainTampered(f"threshold version {version} in {self.table} was changed after its approval "
                                    f"(threshold link {link.seq}); not served")
        newest = max(version for version, _ in items)
        head = self.chain.head(THRESHOLD_CHAIN)
        last = self.chain.link_at(THRESHOLD_CHAIN, head.seq) if head.seq else None
        if last is not None and last.item_id != str(newest):
            raise ChainTampered(f"threshold version {newest} in {self.table} is not the last approved version "
                                f"(the threshold chain ends with version {last.item_id}); not served")
        return [ThresholdSet.from_dict(json.loads(doc)) for _, doc in items]

    def _proposal_item(self, proposal: ThresholdProposal) -> dict[str, Any]:
        return {
            "PK": {"S": PROPOSALS_PK},
            "SK": {"S": f"PROPOSAL#{proposal.proposal_id}"},
            "status": {"S": proposal.status.value},
            "proposedAt": {"S": iso(proposal.proposed_at)},
            "doc": {"S": json.dumps(proposal.to_dict(), sort_keys=True)},
        }

    def _query(self, pk: str) -> list[dict[str, Any]]:
        from opx_learning.safety.dynamo_backend import _call

        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        while True:
            page = _call(self.client.query, **kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def create(self, proposal: ThresholdProposal) -> None:
        """Conditional put of a new proposal."""
        from botocore.exceptions import ClientError

        from opx_learning.safety.dynamo_backend import _call

        try:
            _call(self.client.put_item, TableName=self.table, Item=self._proposal_item(proposal),
                  ConditionExpression="attribute_not_exists(PK)")
        except ClientError as exc:
            raise ValueError(f"proposal_id: {proposal.proposal_id!r} exists already") from exc

    def get(self, proposal_id: str) -> ThresholdProposal | None:
        """Strongly consistent read of one proposal."""
        from opx_learning.safety.dynamo_backend import _call

        item = _call(self.client.get_item, TableName=self.table, ConsistentRead=True,
                     Key={"PK": {"S": PROPOSALS_PK}, "SK": {"S": f"PROPOSAL#{proposal_id}"}}).get("Item")
        return ThresholdProposal.from_dict(json.loads(item["doc"]["S"])) if item else None

    def proposals(self) -> list[ThresholdProposal]:
        """Every proposal (one paginated Query), oldest first."""
        found = [ThresholdProposal.from_dict(json.loads(item["doc"]["S"])) for item in self._query(PROPOSALS_PK)]
        return sorted(found, key=lambda p: (p.proposed_at, p.proposal_id))

    def history(self) -> list[ThresholdSet]:
        """Every approved version (one paginated Query), oldest first."""
        found = sorted((int(item["version"]["N"]), item["doc"]["S"]) for item in self._query(VERSIONS_PK))
        return self._verified(found)

    def current(self) -> ThresholdSet | None:
        """The current set item, or None."""
        from opx_learning.safety.dynamo_backend import _call

        item = _call(self.client.get_item, TableName=self.table, Key=CURRENT_KEY, ConsistentRead=True).get("Item")
        return self._verified([(int(item["version"]["N"]), item["doc"]["S"])])[0] if item else None

    def decide(self, decided: ThresholdProposal, approved: ThresholdSet | None, expected_version: int) -> bool:
        """One TransactWriteItems of conditional puts; a cancelled transaction wrote nothing."""
        from botocore.exceptions import ClientError

        from opx_learning.safety.dynamo_backend import _call

        writes: list[dict[str, Any]] = [{
            "Put": {
                "TableName": self.table,
                "Item": self._proposal_item(decided),
                "ConditionExpression": "#status = :pending",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":pending": {"S": ProposalStatus.PENDING.value}},
            }
        }]
        if approved is not None:
            doc = {"S": json.dumps(approved.to_dict(), sort_keys=True)}
            current: dict[str, Any] = {
                "TableName": self.table,
                "Item": {**CURRENT_KEY, "version": {"N": str(approved.version)}, "doc": doc},
            }
            if expected_version == 0:
                current["ConditionExpression"] = "attribute_not_exists(PK)"
            else:
                current["ConditionExpression"] = "#version = :expected"
                current["ExpressionAttributeNames"] = {"#version": "version"}
                current["ExpressionAttributeValues"] = {":expected": {"N": str(expected_version)}}
            version_item = {
                "PK": {"S": VERSIONS_PK},
                "SK": {"S": f"VERSION#{approved.version:08d}"},
                "version": {"N": str(approved.version)},
                "doc": doc,
            }
            writes += [
                {"Put": current},
                {"Put": {"TableName": self.table, "Item": version_item,
                         "ConditionExpression": "attribute_not_exists(PK)"}},
            ]
        if self.chain is not None and approved is not None:
            try:
                self.chain.write(writes, THRESHOLD_CHAIN, THRESHOLD_KIND, str(approved.version),
                                 content_hash([approved.version, doc["S"]]), record_failed=_Lost())
            except _Lost:
                return False
            return True
        try:
            _call(self.client.transact_write_items, TransactItems=writes)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("TransactionCanceledException", "ConditionalCheckFailedException"):
                return False
            raise BackendUnavailable(f"DynamoDB {code}: {exc}") from exc
        return True


def threshold_store(settings: Any) -> ThresholdStore:
    """The threshold store of the settings' backend (the state database, or the DynamoDB config table)."""
    from opx_learning.backends import backend_for

    return backend_for(settings).threshold_store()


__all__ = [
    "DynamoThresholdStore",
    "ProposalStatus",
    "SqliteThresholdStore",
    "ThresholdProposal",
    "ThresholdSet",
    "ThresholdStore",
    "threshold_store",
]
