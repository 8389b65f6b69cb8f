"""What an integrity check reports, and the one P0 `DATA_CORRUPTION` alert it raises.

A `Finding` names the store, where (a path, an S3 URI or a table and key) and what is
wrong, plus a digest of the evidence as it was read. Its `fingerprint` depends on
store, location and evidence only, so a snapshot read and a later sweep that meet the
same corrupt bytes raise the same alert (same deduplication id), while new damage to
the same file is a new alert. Nothing here changes or removes the evidence.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opx_learning.alerts.models import AUDIT_TAMPERED, DATA_CORRUPTION, Alert
from opx_learning.config import Settings

log = logging.getLogger(__name__)

INTEGRITY_OPERATION = "INTEGRITY"
# An SNS message is at most 256 KB: the alert lists this many findings and counts the rest.
MAX_ALERT_FINDINGS = 50


def digest(data: bytes | str) -> str:
    """SHA-256 hex of bytes (text is UTF-8 encoded)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@dataclass(frozen=True)
class Finding:
    """One integrity failure: which store, where, what is wrong, and a digest of the evidence read.

    Attributes:
        store: `snapshots`, `outcomes`, `assets` or `audit`.
        location: file path, S3 URI or `table#key` of the damaged item.
        problem: what is wrong, in words.
        evidence: SHA-256 of the bytes (or row) as read; empty when nothing could be read.
        alarm: `DATA_CORRUPTION`, or `AUDIT_TAMPERED` for a broken hash chain or a dropped protection.
    """

    store: str
    location: str
    problem: str
    evidence: str = ""
    alarm: str = DATA_CORRUPTION

    @property
    def fingerprint(self) -> str:
        """Stable id of this damage: SHA-256 of store, location and evidence."""
        return digest(f"{self.store}|{self.location}|{self.evidence}")

    def to_dict(self) -> dict[str, str]:
        """JSON-safe fields plus the fingerprint."""
        return {
            "store": self.store,
            "location": self.location,
            "problem": self.problem,
            "evidence_sha256": self.evidence,
            "fingerprint": self.fingerprint,
            "alarm": self.alarm,
        }

    def __str__(self) -> str:
        return f"{self.store}: {self.location}: {self.problem}"


class IntegrityError(RuntimeError):
    """Stored data failed its integrity check; the finding says what and where."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(f"{DATA_CORRUPTION}: {finding.location}: {finding.problem}")
        self.finding = finding


def corruption_alert(
    findings: Sequence[Finding], *, source: str, store: str | None = None, window: dict[str, str] | None = None
) -> Alert:
    """The P0 `DATA_CORRUPTION` alert listing `findings`.

    Args:
        findings: at least one finding.
        source: what detected it (`read`, `verify`, `daily sweep`).
        store: description of the stores read (e.g. `Settings.store_description`).
        window: the sweep window `{"start", "end"}`, if any.

    Returns:
        The alert; its deduplication key is the finding's fingerprint (one finding) or
        the digest of the sorted fingerprints, so the same damage never pages twice.

    Raises:
        ValueError: `findings` is empty.
    """
    if not findings:
        raise ValueError("findings: at least one finding is needed for a DATA_CORRUPTION alert")
    prints = sorted({finding.fingerprint for finding in findings})
    key = prints[0] if len(prints) == 1 else digest("\n".join(prints))
    first = findings[0]
    details: dict[str, Any] = {
        "source": source,
        "count": len(findings),
        "what": first.store if len({f.store for f in findings}) == 1 else "several stores",
        "where": first.location,
        "problem": first.problem,
        "findings": [finding.to_dict() for finding in findings[:MAX_ALERT_FINDINGS]],
        "evidence_kept": True,
    }
    if len(findings) > MAX_ALERT_FINDINGS:
        details["findings_not_listed"] = len(findings) - MAX_ALERT_FINDINGS
    if store:
        details["store"] = store
    if window:
        details["window"] = window
    return Alert(alarm=DATA_CORRUPTION, severity="P0", operation=INTEGRITY_OPERATION, details=details, key=key)


def publish_corruption(
    findings: Sequence[Finding],
    *,
    source: str,
    settings: Settings | None,
    window: dict[str, str] | None = None,
    publisher: Any = None,
) -> tuple[Alert, bool]:
    """Raise the P0 alert for `findings` through the backend's publisher (never raises on delivery).

    Args:
        findings: at least one finding.
        source: what detected it (`read`, `verify`, `daily sweep`).
        settings: settings naming the store and the backend; None (a store opened on a bare
            directory): the alert names no store and, without `publisher`, is only logged.
        window: the sweep window, if any.
        publisher: an `AlertPublisher` (default: the settings' backend's, `alerts.jsonl` or SNS).

    Returns:
        The alert and whether it was delivered.
    """
    from opx_learning.alerts.publishers import alert_publisher

    store = settings.store_description if settings is not None else None
    alert = corruption_alert(findings, source=source, store=store, window=window)
    try:
        if publisher is None:
            if settings is None:
                raise LookupError("no settings name a backend")
            publisher = alert_publisher(settings)
    except Exception as exc:  # noqa: BLE001 - a missing publisher must not hide the corruption itself
        log.error("DATA_CORRUPTION alert not delivered (no publisher: %s): %s", exc, json.dumps(alert.to_dict()))
        return alert, False
    return alert, publisher.publish(alert)


def tamper_alerts(
    findings: Sequence[Finding], *, source: str, store: str | None = None, heads: Any = None
) -> list[Alert]:
    """One P0 `AUDIT_TAMPERED` alert per finding, each with the chain heads read (deduplicated by the finding)."""
    alerts = []
    for finding in findings:
        details: dict[str, Any] = {
            "source": source,
            "what": finding.store,
            "where": finding.location,
            "problem": finding.problem,
            "finding": finding.to_dict(),
            "evidence_kept": True,
        }
        if store:
            details["store"] = store
        if heads:
            details["chain_heads"] = heads
        alerts.append(Alert(alarm=AUDIT_TAMPERED, severity="P0", operation=INTEGRITY_OPERATION, details=details,
                            key=finding.fingerprint))
    return alerts


def publish_tampering(
    findings: Sequence[Finding],
    *,
    source: str,
    settings: Settings,
    heads: Any = None,
    publisher: Any = None,
) -> list[tuple[Alert, bool]]:
    """Raise one P0 `AUDIT_TAMPERED` per tampering finding through the backend's publisher (never raises on delivery).

    Args:
        findings: the findings; those whose alarm is not `AUDIT_TAMPERED` are ignored.
        source: what detected it (`verify`, `daily sweep`).
        settings: the backend whose publisher is used.
        heads: the chain heads read (and anchored), put in each alert's details.
        publisher: an `AlertPublisher` (default: the backend's).

    Returns:
        Each alert and whether it was delivered.
    """
    from opx_learning.alerts.publishers import alert_publisher

    tampered = [finding for finding in findings if finding.alarm == AUDIT_TAMPERED]
    alerts = tamper_alerts(tampered, source=source, store=settings.store_description, heads=heads)
    if not alerts:
        return []
    try:
        publisher = publisher or alert_publisher(settings)
    except Exception as exc:  # noqa: BLE001 - a missing publisher must not hide the tampering itself
        for alert in alerts:
            log.error("AUDIT_TAMPERED alert not delivered (no publisher: %s): %s", exc, json.dumps(alert.to_dict()))
        return [(alert, False) for alert in alerts]
    return [(alert, publisher.publish(alert)) for alert in alerts]
