"""The hash chains of the aws backend: links in the DynamoDB config table, the anchor in an S3 object.

Items of `opx-automation-config`:
- `PK = "CHAIN#META"`, `SK = "METADATA"`: the state identity (`stateId`, random, written once);
- `PK = "CHAIN#<chain>"`, `SK = "SEQ#<12 digits>"`: one link (`kind`, `itemId`, `contentHash`,
  `prevHash`, `linkHash`);
- `PK = "CHAIN#<chain>"`, `SK = "HEAD"`: the chain's head (`seq`, `linkHash`), the item every
  chained write conditions on, so concurrent writers serialise like SQLite's `BEGIN IMMEDIATE`;
- `PK = "CHAIN#audit#KILL_SWITCH"`, `SK = "SEQ#…"`: a copy of each kill-switch link, so a
  kill-switch read finds the last kill-switch records with one Query.

A record write, its link and the head move are one `TransactWriteItems`. The anchor is the
JSON object `<OPX_ASSETS_S3_URI>/integrity/chain-anchor.json` (outside DynamoDB, in the bucket
the runtime already writes): `{state_id, epoch, heads: {chain: {seq, link_hash}}}`, moved
forward after each chained write (best effort: a lagging anchor is still a prefix of the
chain, so it never causes a false mismatch). Without `OPX_ASSETS_S3_URI` there is no anchor.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from opx_learning.core.windows import iso
from opx_learning.safety.audit import utcnow
from opx_learning.safety.chain import (
    ADOPT_HINT,
    AUDIT_CHAIN,
    CHAINS,
    THRESHOLD_CHAIN,
    Head,
    Link,
    Problem,
    StateMismatch,
    anchor_problem,
    audit_content,
    compare,
    content_hash,
    genesis,
    record_values,
    walk,
)
from opx_learning.safety.models import BackendUnavailable, OperationType

META_KEY = {"PK": {"S": "CHAIN#META"}, "SK": {"S": "METADATA"}}
KILL_SWITCH_LINKS = f"CHAIN#{AUDIT_CHAIN}#KILL_SWITCH"
ANCHOR_NAME = "integrity/chain-anchor.json"
_MAX_ATTEMPTS = 25
_log = logging.getLogger("opx_learning.safety")


def _seq_key(seq: int) -> str:
    return f"SEQ#{seq:012d}"


def _link_item(pk: str, link: Link) -> dict[str, Any]:
    return {
        "PK": {"S": pk},
        "SK": {"S": _seq_key(link.seq)},
        "seq": {"N": str(link.seq)},
        "kind": {"S": link.kind},
        "itemId": {"S": link.item_id},
        "contentHash": {"S": link.content_hash},
        "prevHash": {"S": link.prev_hash},
        "linkHash": {"S": link.link_hash},
    }


def _item_link(chain: str, item: dict[str, Any]) -> Link:
    return Link(chain, int(item["seq"]["N"]), item["kind"]["S"], item["itemId"]["S"], item["contentHash"]["S"],
                item["prevHash"]["S"], item["linkHash"]["S"])


class S3Anchor:
    """The anchored chain heads of the aws backend: one JSON object on S3.

    Args:
        uri: `s3://bucket/prefix/integrity/chain-anchor.json`.
        region: the S3 client's region.
    """

    def __init__(self, uri: str, region: str | None = None) -> None:
        self.uri = uri
        self.region = region
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            from opx_learning.stores.blobs import s3_client

            self._client = s3_client(self.region)
        return self._client

    def read(self) -> dict[str, Any] | None:
        """The anchor document, or None when there is none.

        Raises:
            StateMismatch: the object cannot be read or parsed.
        """
        from opx_learning.stores.blobs import get_bytes

        try:
            data = get_bytes(self.uri, client=self._s3())
            return None if data is None else json.loads(data)
        except (ClientError, BotoCoreError, ValueError) as exc:
            raise StateMismatch(f"chain anchor {self.uri} cannot be read: {exc}; {ADOPT_HINT}") from exc

    def write(self, doc: dict[str, Any]) -> None:
        """Replace the anchor document."""
        from opx_learning.stores.blobs import put_bytes

        put_bytes(self.uri, json.dumps(doc, sort_keys=True, indent=2).encode(), client=self._s3())

    def heads(self) -> dict[str, Head]:
        """The anchored heads by chain (empty without an anchor)."""
        doc = self.read()
        if not doc:
            return {}
        return {chain: Head(chain, int(h["seq"]), h["link_hash"]) for chain, h in doc.get("heads", {}).items()}


class DynamoChain:
    """Links, heads and the anchor of the aws backend's chains.

    Args:
        client: DynamoDB client.
        table: the config table.
        anchor: the S3 anchor (None: no `OPX_ASSETS_S3_URI`, nothing anchored).
    """

    def __init__(self, client: Any, table: str, anchor: S3Anchor | None) -> None:
        self.client = client
        self.table = table
        self.anchor = anchor
        self._state_id: str | None = None

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        from opx_learning.safety.dynamo_backend import _call

        return _call(fn, **kwargs)

    def meta(self) -> dict[str, Any] | None:
        """The `CHAIN#META` item as plain values, or None."""
        item = self._call(self.client.get_item, TableName=self.table, Key=META_KEY, ConsistentRead=True).get("Item")
        if not item:
            return None
        return {"state_id": item["stateId"]["S"], "anchored": item.get("anchored", {}).get("BOOL", False)}

    def state_id(self, *, create: bool = True) -> str | None:
        """The state identity; the first chained write creates it (`create`)."""
        if self._state_id is None:
            meta = self.meta()
            if meta is None and create:
                try:
                    self._call(self.client.put_item, TableName=self.table,
                               Item={**META_KEY, "stateId": {"S": uuid.uuid4().hex}},
                               ConditionExpression="attribute_not_exists(PK)")
                except ClientError:
                    pass  # another writer created it first
                meta = self.meta()
            self._state_id = meta["state_id"] if meta else None
        return self._state_id

    def head(self, chain: str) -> Head:
        """The chain's head (seq 0 and the genesis hash when empty)."""
        item = self._call(self.client.get_item, TableName=self.table, ConsistentRead=True,
                          Key={"PK": {"S": f"CHAIN#{chain}"}, "SK": {"S": "HEAD"}}).get("Item")
        if item:
            return Head(chain, int(item["seq"]["N"]), item["linkHash"]["S"])
        return Head(chain, 0, genesis(self.state_id() or "", chain))

    def link_at(self, chain: str, seq: int) -> Link | None:
        """One link, or None."""
        item = self._call(self.client.get_item, TableName=self.table, ConsistentRead=True,
                          Key={"PK": {"S": f"CHAIN#{chain}"}, "SK": {"S": _seq_key(seq)}}).get("Item")
        return _item_link(chain, item) if item else None

    def links(self, chain: str, *, pk: str | None = None, newest_first: bool = False,
              limit: int | None = None) -> list[Link]:
        """The links of a chain (or of its kill-switch copy `pk`), paginated Query, never a Scan."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :seq)",
            "ExpressionAttributeValues": {":pk": {"S": pk or f"CHAIN#{chain}"}, ":seq": {"S": "SEQ#"}},
            "ConsistentRead": True,
            "ScanIndexForward": not newest_first,
        }
        if limit is not None:
            kwargs["Limit"] = limit
        found: list[Link] = []
        while True:
            page = self._call(self.client.query, **kwargs)
            found.extend(_item_link(chain, item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page or (limit is not None and len(found) >= limit):
                return found[:limit] if limit is not None else found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def kill_switch_links(self, limit: int = 20) -> list[Link]:
        """The newest kill-switch links of the audit chain, newest first."""
        return self.links(AUDIT_CHAIN, pk=KILL_SWITCH_LINKS, newest_first=True, limit=limit)

    def write(self, record_writes: list[dict[str, Any]], chain: str, kind: str, item_id: str, content: str,
              *, record_failed: Exception) -> Link:
        """Write records and their link in one transaction, retrying while other writers move the head.

        Args:
            record_writes: the records' `TransactItems` entries (conditional Puts), first in the transaction.
            chain: the chain to link into.
            kind: the link kind.
            item_id: the linked item's id.
            content: the content hash of the item as stored.
            record_failed: raised when a record's own condition fails (nothing was written).

        Returns:
            The link written.
        """
        for attempt in range(_MAX_ATTEMPTS):
            head = self.head(chain)
            link = Link.make(chain, head.seq + 1, kind, item_id, content, head.link_hash)
            head_item = {"PK": {"S": f"CHAIN#{chain}"}, "SK": {"S": "HEAD"}, "seq": {"N": str(link.seq)},
                         "linkHash": {"S": link.link_hash}}
            head_put: dict[str, Any] = {"TableName": self.table, "Item": head_item}
            if head.seq == 0:
                head_put["ConditionExpression"] = "attribute_not_exists(PK)"
            else:
                head_put["ConditionExpression"] = "#seq = :seq AND linkHash = :hash"
                head_put["ExpressionAttributeNames"] = {"#seq": "seq"}
                head_put["ExpressionAttributeValues"] = {":seq": {"N": str(head.seq)},
                                                         ":hash": {"S": head.link_hash}}
            writes = [*record_writes, {"Put": head_put},
                      {"Put": {"TableName": self.table, "Item": _link_item(f"CHAIN#{chain}", link),
                               "ConditionExpression": "attribute_not_exists(PK)"}}]
            if kind.startswith("KILL_SWITCH_"):
                writes.append({"Put": {"TableName": self.table, "Item": _link_item(KILL_SWITCH_LINKS, link)}})
            try:
                self._call(self.client.transact_write_items, TransactItems=writes)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in ("TransactionCanceledException", "ConditionalCheckFailedException",
                                "TransactionConflictException"):
                    raise BackendUnavailable(f"DynamoDB {code}: {exc}") from exc
                reasons = exc.response.get("CancellationReasons") or []
                mine = [reason.get("Code") for reason in reasons[: len(record_writes)]]
                if "ConditionalCheckFailed" in mine or (not reasons and record_writes):
                    raise record_failed from exc
                time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
                continue
            self.advance(link)
            return link
        raise BackendUnavailable(f"the {chain} chain head moved concurrently too often; try again")

    def advance(self, link: Link) -> None:
        """Move the anchor forward to `link` when the chain still holds the anchored head (best effort)."""
        if self.anchor is None:
            return
        try:
            doc = self.anchor.read()
            if doc is None:
                meta = self.meta()
                if meta is not None and not meta["anchored"]:
                    # Never anchored (the bucket was missing at initialisation): anchor the chain as it is now.
                    self.pin({"action": "FIRST_ANCHOR"})
                return
            if doc.get("state_id") != self.state_id():
                return
            pinned = doc.get("heads", {}).get(link.chain)
            if pinned and int(pinned["seq"]) >= link.seq:
                return
            if pinned and int(pinned["seq"]) > 0:
                at = self.link_at(link.chain, int(pinned["seq"]))
                if at is None or at.link_hash != pinned["link_hash"]:
                    return  # a rewritten chain never drags its anchor along
            doc["heads"][link.chain] = {"seq": link.seq, "link_hash": link.link_hash}
            doc["updated_at"] = iso(utcnow())
            self.anchor.write(doc)
        except Exception as exc:  # noqa: BLE001 - a lagging anchor is safe; the write itself succeeded
            _log.warning("chain anchor not moved to %s: %s", link.head(), exc)

    def mismatch(self) -> str | None:
        """Why the tables disagree with the anchor (None when every chain holds its anchored head, or no anchor)."""
        meta = self.meta()
        if meta is None:
            return (f"DynamoDB table {self.table} predates the hash-chained audit trail (no CHAIN#META item); "
                    "build its chain with `opx-learning init --adopt` (EMERGENCY_OVERRIDE, audited)")
        if self.anchor is None or not meta["anchored"]:
            return None  # nothing anchored yet: the first chained write anchors the heads
        doc = self.anchor.read()
        if doc is None:
            return f"the chain anchor {self.anchor.uri} is missing (deleted?)"
        if doc.get("state_id") != meta["state_id"]:
            return (f"DynamoDB table {self.table} holds state {meta['state_id'][:12]}… but {self.anchor.uri} pins "
                    f"state {str(doc.get('state_id'))[:12]}… (tables swapped or re-created)")
        for chain in CHAINS:
            pinned = doc.get("heads", {}).get(chain)
            if not pinned:
                continue
            head = Head(chain, int(pinned["seq"]), pinned["link_hash"])
            problem = anchor_problem(head, self.link_at(chain, head.seq) if head.seq else None, self.head(chain),
                                     self.anchor.uri)
            if problem:
                return problem
        return None

    def pin(self, entry: dict[str, Any]) -> dict[str, Head]:
        """Anchor the current heads as a new epoch and mark the state anchored (initialisation, adoption)."""
        state_id = self.state_id() or ""
        heads = {chain: self.head(chain) for chain in CHAINS}
        if self.anchor is not None:
            try:
                old = self.anchor.read() or {}
            except StateMismatch:
                old = {}
            try:
                self.anchor.write({
                    "state_id": state_id,
                    "epoch": int(old.get("epoch", 0)) + 1,
                    "heads": {chain: {"seq": h.seq, "link_hash": h.link_hash} for chain, h in heads.items()},
                    "updated_at": iso(utcnow()),
                    "entry": entry,
                })
            except (ClientError, BotoCoreError) as exc:
                # Not anchored yet (e.g. the assets bucket does not exist): the first chained write anchors it.
                _log.warning("chain heads not anchored in %s: %s", self.anchor.uri, exc)
                return heads
            self._call(self.client.put_item, TableName=self.table,
                       Item={**META_KEY, "stateId": {"S": state_id}, "anchored": {"BOOL": True}})
        return heads


def _raw(item: dict[str, Any]) -> str:
    """The content hash of an item that no longer parses (it cannot match its link)."""
    return content_hash({"unparsable": json.dumps(item, sort_keys=True, default=str)})


def _audit_contents(chains: DynamoChain, table: str) -> dict[str, str]:
    """Audit id -> content hash of every record reachable through `OperationTypeIndex` (raw items, never parsed away)."""
    from opx_learning.safety.dynamo_backend import OPERATION_TYPE_INDEX, _item_record

    contents: dict[str, str] = {}
    for operation in OperationType:
        kwargs: dict[str, Any] = {
            "TableName": table, "IndexName": OPERATION_TYPE_INDEX, "KeyConditionExpression": "#op = :op",
            "ExpressionAttributeNames": {"#op": "operationType"},
            "ExpressionAttributeValues": {":op": {"S": operation.value}},
        }
        while True:
            page = chains._call(chains.client.query, **kwargs)
            for item in page.get("Items", []):
                audit_id = item.get("auditId", {}).get("S") or item["PK"]["S"].removeprefix("AUDIT#")
                try:
                    contents[audit_id] = content_hash(audit_content(record_values(_item_record(item))))
                except (KeyError, TypeError, ValueError):
                    contents[audit_id] = _raw(item)
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return contents


def verify_dynamo_chains(settings: Any) -> tuple[list[Problem], dict[str, Head], list[str]]:
    """Walk the aws backend's chains: links, head items, audit records, threshold versions and the S3 anchor.

    Returns:
        The problems found, the chain heads, and notes (no anchor configured, tables that predate the chain).
    """
    from opx_learning.safety.dynamo_backend import (
        dynamo_chain,
        dynamo_client,
    )
    from opx_learning.safety.threshold_store import VERSIONS_PK

    client = dynamo_client(settings.region)
    chains = dynamo_chain(settings, client)
    meta = chains.meta()
    if meta is None:
        note = (f"DynamoDB table {settings.config_table} predates the hash-chained audit trail; "
                "`opx-learning init --adopt` builds it")
        return [], {}, [note]
    state_id = meta["state_id"]
    contents: dict[str, dict[str, str]] = {AUDIT_CHAIN: _audit_contents(chains, settings.audit_table),
                                           THRESHOLD_CHAIN: {}}
    kwargs: dict[str, Any] = {"TableName": settings.config_table, "KeyConditionExpression": "PK = :pk",
                              "ExpressionAttributeValues": {":pk": {"S": VERSIONS_PK}}, "ConsistentRead": True}
    while True:
        page = chains._call(client.query, **kwargs)
        for item in page.get("Items", []):
            try:
                version = int(item["version"]["N"])
                contents[THRESHOLD_CHAIN][str(version)] = content_hash([version, item["doc"]["S"]])
            except (KeyError, ValueError):
                contents[THRESHOLD_CHAIN][item["SK"]["S"].removeprefix("VERSION#").lstrip("0")] = _raw(item)
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    labels = {AUDIT_CHAIN: "audit record", THRESHOLD_CHAIN: "threshold version"}
    problems: list[Problem] = []
    heads: dict[str, Head] = {}
    for chain in CHAINS:
        links = chains.links(chain)
        problems += walk(chain, links, genesis(state_id, chain))
        problems += compare(chain, links, contents[chain], labels[chain])
        heads[chain] = links[-1].head() if links else Head(chain, 0, genesis(state_id, chain))
        stored = chains.head(chain)
        if stored != heads[chain]:
            problems.append(Problem(f"{chain} head", f"the {chain} head item says link {stored.seq} but the chain "
                                                     f"ends at link {heads[chain].seq}", stored.link_hash))
    notes: list[str] = []
    if chains.anchor is None:
        notes.append("no OPX_ASSETS_S3_URI: the chain heads are not anchored outside DynamoDB")
        return problems, heads, notes
    try:
        doc = chains.anchor.read()
    except StateMismatch as exc:
        return [*problems, Problem(chains.anchor.uri, str(exc))], heads, notes
    if doc is None:
        if meta["anchored"]:
            problems.append(Problem(chains.anchor.uri, f"the chain anchor {chains.anchor.uri} is missing (deleted)"))
        else:
            notes.append(f"the chain heads are not anchored yet ({chains.anchor.uri}); `opx-learning init --adopt`")
        return problems, heads, notes
    if doc.get("state_id") != state_id:
        problems.append(Problem(chains.anchor.uri, f"the tables hold state {state_id[:12]}… but the anchor pins "
                                                   f"state {str(doc.get('state_id'))[:12]}… (swapped or re-created)"))
        return problems, heads, notes
    for chain in CHAINS:
        pinned = doc.get("heads", {}).get(chain)
        if pinned:
            head = Head(chain, int(pinned["seq"]), pinned["link_hash"])
            problem = anchor_problem(head, chains.link_at(chain, head.seq) if head.seq else None, heads[chain],
                                     chains.anchor.uri)
            if problem:
                problems.append(Problem(f"{chain} anchor", problem, head.link_hash))
    return problems, heads, notes


__all__ = ["ANCHOR_NAME", "KILL_SWITCH_LINKS", "DynamoChain", "S3Anchor", "verify_dynamo_chains"]
