"""Outcomes as the platform's exports hold them, for the tests that ingest files."""

from __future__ import annotations

from typing import Any


def record(oid: str, day: str, hour: int = 10, **changes: Any) -> dict[str, Any]:
    """One outcome in the platform's nested camelCase, as an export holds it."""
    item: dict[str, Any] = {
        "outcomeId": oid,
        "incidentId": f"inc-{oid}",
        "service": "checkout",
        "recordedAt": f"{day}T{hour:02d}:00:00.000Z",
        "validatedAt": f"{day}T{hour:02d}:30:00.000Z",
        "classification": {"truePositive": True, "falsePositive": False, "rootCause": "db pool", "resolutionType": "FIXED"},
        "timing": {"ttd": 60000, "ttr": 600000},
        "predictedConfidence": 0.75,
        "humanAssessment": {"confidenceRating": 0.5},
    }
    for key, value in changes.items():
        if key in item["classification"]:
            item["classification"][key] = value
        elif key in item["timing"]:
            item["timing"][key] = value
        elif value is None:
            item.pop(key, None)
        else:
            item[key] = value
    return item
