"""AWS backend: audit trail, kill switch and rate limits in the DynamoDB tables of docs/aws.md.

Layout:
- `opx-automation-audit`: `PK = "AUDIT#<audit_id>"`, `SK = "METADATA"`, camelCase attributes
  (auditId, operationType, triggerType, status, startTime, endTime, durationMs, parameters,
  results, errorMessage, triggeredBy {type, principal}, runId, version); GSI
  `OperationTypeIndex` (operationType, startTime), projection ALL.
- `opx-automation-config`: kill switch at `PK = "CONFIG#KILL_SWITCH"`, `SK = "METADATA"`;
  rate-limit slots at `PK = "RATELIMIT#<principal>#<operation>"`, `SK = "SLOT#<k>"`.

Status transitions and rate-limit slots are conditional writes; queries paginate and
never scan; throttling is retried by botocore's standard retry mode with backoff.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from opx_learning.config import Settings
from opx_learning.core.windows import iso, to_utc
from opx_learning.safety.audit import AuditLog
from opx_learning.safety.chain import (
    ADOPT_HINT,
    AUDIT_CHAIN,
    Head,
    StateMismatch,
    audit_content,
    audit_kind,
    check_against_trail,
    content_hash,
    record_values,
    stored_record,
)
from opx_learning.safety.dynamo_chain import ANCHOR_NAME, DynamoChain, S3Anchor
from opx_learning.safety.kill_switch import (
    LOST_HINT,
    NOT_INITIALISED_HINT,
    KillSwitchStore,
)
from opx_learning.safety.models import (
    AuditRecord,
    AuditStatus,
    AuditTransitionError,
    BackendUnavailable,
    KillSwitchState,
    KillSwitchUnavailable,
    OperationType,
    Principal,
    TriggerType,
)
from opx_learning.safety.rate_limit import WINDOW_SECONDS, RateLimiter

OPERATION_TYPE_INDEX = "OperationTypeIndex"
KILL_SWITCH_KEY = {"PK": {"S": "CONFIG#KILL_SWITCH"}, "SK": {"S": "METADATA"}}
INITIALISED_KEY = {"PK": {"S": "CONFIG#INITIALISED"}, "SK": {"S": "METADATA"}}
DEFAULT_MAX_ATTEMPTS = 8
MAX_ITEM_BYTES = 400 * 1024
# Stored audit items stay under this (an upper bound, see `item_size`), well inside MAX_ITEM_BYTES.
ITEM_BUDGET_BYTES = 350_000
ENABLED_NOW = "ENABLED"
ALREADY_ENABLED = "ALREADY_ENABLED"
TRUNCATION_MARKER = "… [truncated:"
# Free-form audit fields, clipped (characters per string, elements per list) until an item fits.
_CLIPPABLE = frozenset({"parameters", "results", "errorMessage"})
_CLIP_LEVELS = ((16_384, 10_000), (4_096, 1_000), (1_024, 100), (256, 10))
_CLIPPED_TEXT = re.compile(r"(?P<kept>.*)… \[truncated: \d+ of (?P<total>\d+) characters stored\]", re.DOTALL)
_CLIPPED_LIST = re.compile(r"… \[truncated: \d+ of (?P<total>\d+) items stored\]")

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def dynamo_client(
    region: str,
    *,
    endpoint_url: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    connect_timeout: float = 5.0,
    read_timeout: float = 10.0,
) -> Any:
    """A DynamoDB client with standard-mode retries (throttling and transient errors, exponential backoff).

    `endpoint_url=None` lets botocore honour `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_DYNAMODB`.
    """
    config = Config(
        region_name=region,
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=64,
    )
    return boto3.session.Session().client("dynamodb", config=config, endpoint_url=endpoint_url)


def _to_attr(value: Any) -> dict[str, Any]:
    return _serializer.serialize(json.loads(json.dumps(value), parse_float=Decimal))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value.as_tuple().exponent >= 0 else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, set)):
        return [_plain(v) for v in value]
    return value


def _from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _plain(_deserializer.deserialize(value)) for key, value in item.items()}


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _call(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Call a client method; backend failures become BackendUnavailable, conditional failures pass through."""
    try:
        return fn(**kwargs)
    except ClientError as exc:
        if _code(exc) in ("ConditionalCheckFailedException", "TransactionCanceledException"):
            raise
        raise BackendUnavailable(f"DynamoDB {_code(exc)}: {exc}") from exc
    except BotoCoreError as exc:
        raise BackendUnavailable(f"DynamoDB unreachable: {exc}") from exc


def _is_conditional(exc: ClientError) -> bool:
    return _code(exc) == "ConditionalCheckFailedException"


def item_size(item: Mapping[str, Any]) -> int:
    """An upper bound of a serialized item's DynamoDB size: the UTF-8 length of its typed JSON.

    DynamoDB counts attribute names and values with at most a few bytes of overhead per
    element; the typed JSON (`{"S": ...}` wrappers, quotes, separators) is never smaller.
    """
    return len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())


def _clip_text(text: str, keep: int) -> str:
    earlier = _CLIPPED_TEXT.fullmatch(text) if text.endswith("characters stored]") else None
    if earlier is not None:
        text, total = earlier["kept"], int(earlier["total"])
    else:
        total = len(text)
    if total <= keep:
        return text
    kept = min(keep, len(text))
    return f"{text[:kept]}{TRUNCATION_MARKER} {kept} of {total} characters stored]"


def _clip(value: Any, keep: int, items: int) -> Any:
    """Strings cut to `keep` characters and lists to `items` elements, each with a visible marker.

    Clipping what was clipped before keeps the original size in the marker, so a record read
    back and completed is not marked twice.
    """
    if isinstance(value, str):
        return _clip_text(value, keep)
    if isinstance(value, dict):
        return {key: _clip(inner, keep, items) for key, inner in value.items()}
    if isinstance(value, list):
        total = len(value)
        if value and isinstance(value[-1], str) and (earlier := _CLIPPED_LIST.fullmatch(value[-1])) is not None:
            value, total = value[:-1], int(earlier["total"])
        clipped = [_clip(inner, keep, items) for inner in value[:items]]
        if total > len(clipped):
            clipped.append(f"{TRUNCATION_MARKER} {len(clipped)} of {total} items stored]")
        return clipped
    return value


def _fit(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The serialized item, its free-form fields clipped until it is under the DynamoDB item limit."""
    for keep, items in _CLIP_LEVELS:
        clipped = {key: _clip(value, keep, items) if key in _CLIPPABLE else value for key, value in item.items()}
        serialized = {key: _to_attr(value) for key, value in clipped.items()}
        if item_size(serialized) <= ITEM_BUDGET_BYTES:
            return serialized
    dropped = f"{TRUNCATION_MARKER} not stored: the record exceeded the DynamoDB item size limit]"
    for key in ("parameters", "results"):
        clipped[key] = {"truncated": dropped}
    clipped["triggeredBy"] = _clip(clipped["triggeredBy"], 256, 10)
    clipped["runId"] = _clip(clipped.get("runId"), 256, 10)
    return {key: _to_attr(value) for key, value in clipped.items() if value is not None}


def _record_item(record: AuditRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "PK": f"AUDIT#{record.audit_id}",
        "SK": "METADATA",
        "auditId": record.audit_id,
        "operationType": record.operation_type.value,
        "triggerType": record.trigger_type.value,
        "status": record.status.value,
        "startTime": iso(record.start_time),
        "parameters": record.parameters,
        "results": record.results,
        "triggeredBy": record.triggered_by.to_dict(),
        "version": record.version,
    }
    optional = {
        "endTime": iso(record.end_time) if record.end_time else None,
        "durationMs": record.duration_ms,
        "errorMessage": record.error_message,
        "runId": record.run_id,
    }
    item.update({key: value for key, value in optional.items() if value is not None})
    return _fit(item)


def _item_record(item: Mapping[str, Any]) -> AuditRecord:
    data = _from_item(item)
    return AuditRecord(
        audit_id=data["auditId"],
        operation_type=OperationType(data["operationType"]),
        trigger_type=TriggerType(data["triggerType"]),
        status=AuditStatus(data["status"]),
        start_time=to_utc(data["startTime"]),
        end_time=to_utc(data["endTime"]) if data.get("endTime") else None,
        duration_ms=data.get("durationMs"),
        parameters=data.get("parameters") or {},
        results=data.get("results") or {},
        error_message=data.get("errorMessage"),
        triggered_by=Principal.from_dict(data["triggeredBy"]),
        run_id=data.get("runId"),
        version=int(data.get("version", 1)),
    )


class _NotWritten(Exception):
    """A record's own condition failed, so nothing of its transaction was written."""


class DynamoAuditLog(AuditLog):
    """Audit trail in `opx-automation-audit`.

    `page_size` caps items per Query page (default: DynamoDB's 1 MB pages); results are
    always followed across pages via `LastEvaluatedKey`.
    """

    def __init__(self, client: Any, table: str, page_size: int | None = None, chain: DynamoChain | None = None) -> None:
        self.client = client
        self.table = table
        self.page_size = page_size
        self.chain = chain

    def _linked_put(self, item: dict[str, Any], condition: dict[str, Any], failed: Exception) -> None:
        """Put `item` under `condition`, with its audit link in the same transaction when the trail is chained."""
        if self.chain is None:
            try:
                _call(self.client.put_item, TableName=self.table, Item=item, **condition)
            except ClientError as exc:
                if _is_conditional(exc):
                    raise failed from exc
                raise
            return
        stored = _item_record(item)
        values = record_values(stored)
        self.chain.write([{"Put": {"TableName": self.table, "Item": item, **condition}}], AUDIT_CHAIN,
                         audit_kind(values[1], values[3]), stored.audit_id, content_hash(audit_content(values)),
                         record_failed=failed)

    def append(self, record: AuditRecord) -> AuditRecord:
        """Put a new record (and its audit link); an existing id is refused by the condition."""
        self._linked_put(_record_item(record), {"ConditionExpression": "attribute_not_exists(PK)"},
                         AuditTransitionError(f"audit record {record.audit_id} already exists"))
        return record

    def get(self, audit_id: str) -> AuditRecord | None:
        """The record with this id (strongly consistent read), or None."""
        response = _call(
            self.client.get_item,
            TableName=self.table,
            Key={"PK": {"S": f"AUDIT#{audit_id}"}, "SK": {"S": "METADATA"}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return _item_record(item) if item else None

    def query(
        self,
        *,
        operation_type: OperationType | None = None,
        status: AuditStatus | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """One paginated GSI query per operation type (never a scan), merged newest first."""
        operations = [operation_type] if operation_type is not None else list(OperationType)
        records: list[AuditRecord] = []
        for operation in operations:
            records.extend(self._query_operation(operation, status, since, until, limit))
        records.sort(key=lambda r: (r.start_time, r.audit_id), reverse=True)
        return records[:limit] if limit is not None else records

    def _query_operation(
        self,
        operation: OperationType,
        status: AuditStatus | None,
        since: datetime | None,
        until: datetime | None,
        limit: int | None,
    ) -> list[AuditRecord]:
        names = {"#op": "operationType"}
        values: dict[str, Any] = {":op": {"S": operation.value}}
        condition = "#op = :op"
        if since is not None and until is not None:
            condition += " AND #st BETWEEN :since AND :until"
            values[":since"], values[":until"] = {"S": iso(since)}, {"S": iso(until)}
        elif since is not None:
            condition += " AND #st >= :since"
            values[":since"] = {"S": iso(since)}
        elif until is not None:
            condition += " AND #st < :until"
            values[":until"] = {"S": iso(until)}
        if since is not None or until is not None:
            names["#st"] = "startTime"
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": OPERATION_TYPE_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if status is not None:
            kwargs["FilterExpression"] = "#status = :status"
            names["#status"] = "status"
            values[":status"] = {"S": status.value}
        if self.page_size is not None:
            kwargs["Limit"] = self.page_size
        elif limit is not None and status is None:
            kwargs["Limit"] = limit
        found: list[AuditRecord] = []
        while True:
            page = _call(self.client.query, **kwargs)
            for item in page.get("Items", []):
                record = _item_record(item)
                if until is not None and record.start_time >= until:
                    continue
                found.append(record)
            if (limit is not None and len(found) >= limit) or "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _update_running(self, record: AuditRecord, expected_version: int) -> bool:
        condition = {
            "ConditionExpression": "#status = :running AND #version = :version",
            "ExpressionAttributeNames": {"#status": "status", "#version": "version"},
            "ExpressionAttributeValues": {":running": {"S": "RUNNING"}, ":version": {"N": str(expected_version)}},
        }
        try:
            self._linked_put(_record_item(record), condition, _NotWritten())
        except _NotWritten:
            return False
        return True


class DynamoKillSwitchStore(KillSwitchStore):
    """Kill-switch state in `opx-automation-config` (`CONFIG#KILL_SWITCH` / `METADATA`)."""

    def __init__(self, client: Any, table: str, chain: DynamoChain | None = None, audit: DynamoAuditLog | None = None) -> None:
        self.client = client
        self.table = table
        self.chain = chain
        self.audit = audit

    def anchored_heads(self) -> dict[str, Head] | None:
        """The heads pinned in the S3 anchor (None: no anchor)."""
        if self.chain is None or self.chain.anchor is None:
            return None
        return self.chain.anchor.heads() or None

    def anchor_state(self, entry: dict[str, Any]) -> dict[str, Head]:
        """Create the state identity if needed and pin the current heads in the S3 anchor (a new epoch)."""
        return self.chain.pin(entry) if self.chain is not None else {}

    def prepare_adoption(self) -> dict[str, Any]:
        """Chain the records of tables that predate the chain, oldest first (nothing else to repair on DynamoDB)."""
        if self.chain is None or self.audit is None:
            return {}
        legacy = self.chain.meta() is None
        built = 0
        if legacy or self.chain.head(AUDIT_CHAIN).seq == 0:
            records = sorted(self.audit.query(), key=lambda r: (r.start_time, r.audit_id))
            for record in records:
                values = record_values(record)
                self.chain.write([], AUDIT_CHAIN, audit_kind(values[1], values[3]), record.audit_id,
                                 content_hash(audit_content(values)), record_failed=_NotWritten())
                built += 1
        return {"triggers_recreated": [], "predates_chain": legacy, "links_built": built}

    def raw_state(self) -> KillSwitchState:
        """The kill-switch item as stored, without the anchor and audit-trail checks."""
        return self._read_item()

    def initialised(self) -> bool:
        """Whether `init` ran here: the marker item (written beside the state, outlives its deletion) or the state exists."""
        for key in (INITIALISED_KEY, KILL_SWITCH_KEY):
            response = _call(self.client.get_item, TableName=self.table, Key=key, ConsistentRead=True)
            if response.get("Item"):
                return True
        return False

    def read(self) -> KillSwitchState:
        """The stored state (strongly consistent read), checked against the S3 anchor and the last kill-switch record.

        Raises:
            StateMismatch: the tables disagree with the anchor, or the item with the audit trail.
            KillSwitchUnavailable: no item (not initialised or deleted), malformed, or DynamoDB unreachable.
        """
        if self.chain is None:
            return self._read_item()
        try:
            problem = self.chain.mismatch()
            if problem is None:
                state = self._read_item()
                links = self.chain.kill_switch_links()
                records = {}
                for link in links:
                    if link.item_id not in records:
                        record = self.audit.get(link.item_id) if self.audit is not None else None
                        records[link.item_id] = stored_record(record_values(record)) if record else None
        except StateMismatch:
            raise
        except BackendUnavailable as exc:
            raise KillSwitchUnavailable(f"kill switch state unavailable: {exc}; {LOST_HINT}") from exc
        if problem:
            raise StateMismatch(f"{problem}; {ADOPT_HINT}")
        check_against_trail(state, links, records, f"DynamoDB table {self.table}")
        return state

    def _read_item(self) -> KillSwitchState:
        try:
            response = _call(self.client.get_item, TableName=self.table, Key=KILL_SWITCH_KEY, ConsistentRead=True)
        except BackendUnavailable as exc:
            raise KillSwitchUnavailable(str(exc)) from exc
        item = response.get("Item")
        if not item:
            try:
                hint = LOST_HINT if self.initialised() else NOT_INITIALISED_HINT
            except BackendUnavailable:
                hint = LOST_HINT
            raise KillSwitchUnavailable(
                f"kill switch state unavailable: no item CONFIG#KILL_SWITCH in DynamoDB table {self.table}; {hint}"
            )
        try:
            data = _from_item(item)
            by = data.get("disabledBy")
            return KillSwitchState.from_dict(
                {
                    "enabled": data["enabled"],
                    "disabled_at": data.get("disabledAt"),
                    "disabled_by": {"type": by["type"], "principal": by["identifier"]} if by else None,
                    "reason": data.get("reason"),
                    "last_modified": data.get("lastModified"),
                    "until": data.get("until"),
                    "version": data.get("version", 0),
                }
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise KillSwitchUnavailable(f"kill switch state in {self.table} is malformed: {exc}; {LOST_HINT}") from exc

    def write(self, state: KillSwitchState, expected_version: int | None) -> bool:
        """Conditional put on the stored version."""
        body = state.to_rest()
        body.pop("active")
        body["until"] = iso(state.until) if state.until else None
        body["version"] = state.version
        item = {**KILL_SWITCH_KEY, **{k: _to_attr(v) for k, v in body.items() if v is not None}}
        kwargs: dict[str, Any] = {"TableName": self.table, "Item": item}
        if expected_version is not None:
            kwargs["ConditionExpression"] = (
                "attribute_not_exists(PK) OR #version = :version" if expected_version == 0 else "#version = :version"
            )
            kwargs["ExpressionAttributeNames"] = {"#version": "version"}
            kwargs["ExpressionAttributeValues"] = {":version": {"N": str(expected_version)}}
        try:
            _call(self.client.put_item, **kwargs)
        except ClientError as exc:
            if _is_conditional(exc):
                return False
            raise
        return True

    def mark_initialised(self, details: dict[str, Any]) -> None:
        """Write the marker item that says this table was initialised (`details`: when, by whom)."""
        _call(self.client.put_item, TableName=self.table, Item={**INITIALISED_KEY, "details": _to_attr(details)})

    def write_raw(self, item: dict[str, Any]) -> None:
        """Store arbitrary attributes (used to prove that a malformed state fails closed)."""
        _call(self.client.put_item, TableName=self.table, Item={**KILL_SWITCH_KEY, **item})


class DynamoRateLimiter(RateLimiter):
    """Sliding window as `limit` slot items per (principal, operation).

    A slot holds the expiry of the request that took it; a request takes a free
    slot (absent or expired) with a conditional put, so concurrent callers can
    never take more than `limit` slots in any hour.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        limits: Mapping[OperationType, int] | None = None,
        window_seconds: int = WINDOW_SECONDS,
    ) -> None:
        super().__init__(limits, window_seconds)
        self.client = client
        self.table = table

    def _pk(self, principal: str, operation: OperationType) -> str:
        return f"RATELIMIT#{principal}#{operation.value}"

    def _slots(self, principal: str, operation: OperationType) -> dict[int, float]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": self._pk(principal, operation)}},
            "ConsistentRead": True,
        }
        slots: dict[int, float] = {}
        while True:
            page = _call(self.client.query, **kwargs)
            for item in page.get("Items", []):
                slots[int(item["SK"]["S"].removeprefix("SLOT#"))] = float(item["expiresAt"]["N"])
            if "LastEvaluatedKey" not in page:
                return slots
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _acquire(self, principal: str, operation: OperationType, limit: int, now: float) -> tuple[bool, int, float | None]:
        expires = now + self.window_seconds
        # Every lost race means another caller took a slot, so this loop ends after at most `limit` losses.
        for _ in range(4 * limit + 8):
            slots = self._slots(principal, operation)
            live = sorted(exp for exp in slots.values() if exp > now)
            free = [k for k in range(limit) if slots.get(k, 0.0) <= now]
            if len(live) >= limit or not free:
                return False, len(live), (live[0] - self.window_seconds) if live else None
            slot = random.choice(free)
            try:
                _call(
                    self.client.put_item,
                    TableName=self.table,
                    Item={
                        "PK": {"S": self._pk(principal, operation)},
                        "SK": {"S": f"SLOT#{slot:03d}"},
                        "acquiredAt": {"N": repr(now)},
                        "expiresAt": {"N": repr(expires)},
                        "ttl": {"N": str(int(expires) + 60)},
                    },
                    ConditionExpression="attribute_not_exists(PK) OR expiresAt <= :now",
                    ExpressionAttributeValues={":now": {"N": repr(now)}},
                )
            except ClientError as exc:
                if _is_conditional(exc):
                    continue
                raise
            oldest = (live[0] - self.window_seconds) if live else now
            return True, len(live) + 1, oldest
        raise BackendUnavailable(f"rate limit for {principal}/{operation} is too contended; try again")

    def _usage(self, principal: str, operation: OperationType, now: float) -> tuple[int, float | None]:
        live = sorted(exp for exp in self._slots(principal, operation).values() if exp > now)
        return len(live), (live[0] - self.window_seconds) if live else None


def open_dynamo(
    settings: Settings,
    *,
    client: Any = None,
    limits: Mapping[OperationType, int] | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> tuple[DynamoAuditLog, DynamoKillSwitchStore, DynamoRateLimiter]:
    """The three DynamoDB stores for `settings` (table names, region; endpoint from `AWS_ENDPOINT_URL`).

    `limits`: the rate limits (default 5 / 3 / 10; the backend passes `settings.rate_limits`).
    """
    client = client or dynamo_client(settings.region, max_attempts=max_attempts)
    chain = dynamo_chain(settings, client)
    audit = DynamoAuditLog(client, settings.audit_table, chain=chain)
    return (
        audit,
        DynamoKillSwitchStore(client, settings.config_table, chain=chain, audit=audit),
        DynamoRateLimiter(client, settings.config_table, limits),
    )


def dynamo_chain(settings: Settings, client: Any) -> DynamoChain:
    """The chains of the config table, anchored under `OPX_ASSETS_S3_URI` when it is set."""
    anchor = None
    if settings.assets_s3_uri:
        anchor = S3Anchor(f"{settings.assets_s3_uri.rstrip('/')}/{ANCHOR_NAME}", settings.region)
    return DynamoChain(client, settings.config_table, anchor)


def _create_table(client: Any, spec: dict[str, Any]) -> str:
    try:
        _call(client.create_table, **spec)
        outcome = "CREATED"
    except BackendUnavailable as exc:
        cause = exc.__cause__
        if not (isinstance(cause, ClientError) and _code(cause) == "ResourceInUseException"):
            raise
        outcome = "EXISTS"
    _wait_active(client, spec["TableName"])
    return outcome


def _wait_active(client: Any, name: str) -> None:
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def _ensure_deletion_protection(client: Any, name: str) -> str:
    table = _call(client.describe_table, TableName=name)["Table"]
    if table.get("DeletionProtectionEnabled"):
        return ALREADY_ENABLED
    _call(client.update_table, TableName=name, DeletionProtectionEnabled=True)
    _wait_active(client, name)
    return ENABLED_NOW


def _ensure_point_in_time_recovery(client: Any, name: str, *, attempts: int, delay_seconds: float) -> str:
    described = _call(client.describe_continuous_backups, TableName=name)["ContinuousBackupsDescription"]
    if described.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus") == "ENABLED":
        return ALREADY_ENABLED
    for _ in range(attempts - 1):
        try:
            return _enable_point_in_time_recovery(client, name)
        except BackendUnavailable as exc:
            # A table created moments ago answers ContinuousBackupsUnavailableException for a while.
            cause = exc.__cause__
            if not (isinstance(cause, ClientError) and _code(cause) == "ContinuousBackupsUnavailableException"):
                raise
            time.sleep(delay_seconds)
    return _enable_point_in_time_recovery(client, name)


def _enable_point_in_time_recovery(client: Any, name: str) -> str:
    _call(
        client.update_continuous_backups,
        TableName=name,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
    )
    return ENABLED_NOW


def protect_tables(
    settings: Settings, *, client: Any = None, attempts: int = 10, delay_seconds: float = 3.0
) -> dict[str, dict[str, str]]:
    """Turn on deletion protection and point-in-time recovery on the audit and config tables (idempotent).

    Args:
        settings: table names and region.
        client: a DynamoDB client (default: a new one).
        attempts: tries of enabling point-in-time recovery while a new table's backups are not ready yet.
        delay_seconds: pause between those tries.

    Returns:
        Table name -> {"deletion_protection": ..., "point_in_time_recovery": ...}, each
        "ENABLED" (turned on by this call) or "ALREADY_ENABLED".

    Raises:
        BackendUnavailable: DynamoDB refused (e.g. missing permission) or is unreachable.
    """
    client = client or dynamo_client(settings.region)
    return {
        name: {
            "deletion_protection": _ensure_deletion_protection(client, name),
            "point_in_time_recovery": _ensure_point_in_time_recovery(
                client, name, attempts=attempts, delay_seconds=delay_seconds
            ),
        }
        for name in (settings.audit_table, settings.config_table)
    }


def create_tables(settings: Settings, *, client: Any = None) -> dict[str, str]:
    """Create the audit and config tables if missing (idempotent) and wait until ACTIVE.

    New tables have deletion protection from the start; `protect_tables` turns it (and
    point-in-time recovery) on for tables that exist already.

    Returns:
        Table name -> "CREATED" or "EXISTS".

    Raises:
        BackendUnavailable: DynamoDB refused or is unreachable.
    """
    client = client or dynamo_client(settings.region)
    key_schema = [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}]
    key_attrs = [{"AttributeName": "PK", "AttributeType": "S"}, {"AttributeName": "SK", "AttributeType": "S"}]
    audit = {
        "TableName": settings.audit_table,
        "KeySchema": key_schema,
        "AttributeDefinitions": [
            *key_attrs,
            {"AttributeName": "operationType", "AttributeType": "S"},
            {"AttributeName": "startTime", "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": OPERATION_TYPE_INDEX,
                "KeySchema": [
                    {"AttributeName": "operationType", "KeyType": "HASH"},
                    {"AttributeName": "startTime", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
        "DeletionProtectionEnabled": True,
    }
    config = {
        "TableName": settings.config_table,
        "KeySchema": key_schema,
        "AttributeDefinitions": key_attrs,
        "BillingMode": "PAY_PER_REQUEST",
        "DeletionProtectionEnabled": True,
    }
    return {spec["TableName"]: _create_table(client, spec) for spec in (audit, config)}


def init_tables(settings: Settings, *, client: Any = None) -> dict[str, dict[str, str]]:
    """Create the audit and config tables if missing and protect them (what `aws init` does).

    Returns:
        Table name -> {"table": "CREATED" | "EXISTS", "deletion_protection": ..., "point_in_time_recovery": ...},
        protection steps "ENABLED" when this call turned them on (a new table is created
        protected) and "ALREADY_ENABLED" otherwise.

    Raises:
        BackendUnavailable: DynamoDB refused (e.g. missing permission) or is unreachable.
    """
    client = client or dynamo_client(settings.region)
    created = create_tables(settings, client=client)
    protection = protect_tables(settings, client=client)
    done = {}
    for name, outcome in created.items():
        steps = dict(protection[name])
        if outcome == "CREATED":
            steps["deletion_protection"] = ENABLED_NOW
        done[name] = {"table": outcome, **steps}
    return done


__all__ = [
    "DynamoAuditLog",
    "DynamoKillSwitchStore",
    "DynamoRateLimiter",
    "create_tables",
    "dynamo_client",
    "init_tables",
    "open_dynamo",
    "protect_tables",
]
