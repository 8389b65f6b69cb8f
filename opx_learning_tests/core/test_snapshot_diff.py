"""Known-answer tests of the reviewer's snapshot diff: root causes, per-service counts, bands, thresholds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import opx_learning as opx
from opx_learning.core.snapshot_diff import diff_markdown, diff_snapshots
from opx_learning.core.snapshots import build_snapshot

JAN1, JAN2, JAN3 = (datetime(2026, 1, day, tzinfo=UTC) for day in (1, 2, 3))


def summary(service: str, start: datetime, end: datetime, total: int, fp: int, causes: dict[str, int]) -> dict[str, Any]:
    """A pattern-summary row with the fields a snapshot and its diff read."""
    return {
        "summary_id": f"{service}:{start.date()}:{end.date()}",
        "service": service,
        "window_start": start,
        "window_end": end,
        "version": "1",
        "total_incidents": total,
        "true_positives": total - fp,
        "false_positives": fp,
        "fp_rate": fp / total if total else 0.0,
        "top_root_causes": [{"value": k, "count": v, "share": v / total} for k, v in causes.items()],
    }


def calibration(cal_id: str, very_high: tuple[int, float], t08: float) -> dict[str, Any]:
    n, accuracy = very_high
    return {
        "calibration_id": cal_id,
        "window_start": "2025-12-01T00:00:00.000Z",
        "window_end": "2026-01-01T00:00:00.000Z",
        "ece": 0.05,
        "bands": [
            {"band": "HIGH", "n": 30, "accuracy": 0.6, "mean_confidence": 0.7, "drift": -0.1},
            {"band": "VERY_HIGH", "n": n, "accuracy": accuracy, "mean_confidence": 0.85, "drift": accuracy - 0.85},
        ],
        "recommended_thresholds": {"0.2": 0.1, "0.4": 0.3, "0.6": 0.55, "0.8": t08},
    }


@pytest.fixture
def pair() -> tuple[Any, Any]:
    before = build_snapshot(
        "DAILY", JAN1, JAN2, None,
        [
            summary("ALL", JAN1, JAN2, 4, 1, {"disk full": 2, "DNS failure": 1, "cache miss": 1}),
            summary("checkout", JAN1, JAN2, 3, 1, {"disk full": 2, "DNS failure": 1}),
            summary("search", JAN1, JAN2, 1, 0, {"cache miss": 1}),
        ],
        [calibration("dec", (40, 0.9), 0.75)],
    )
    after = build_snapshot(
        "DAILY", JAN2, JAN3, None,
        [
            summary("ALL", JAN2, JAN3, 6, 3, {"dns  FAILURE": 3, "disk full": 2, "oom": 1}),
            summary("billing", JAN2, JAN3, 2, 1, {"disk full": 2}),
            summary("checkout", JAN2, JAN3, 4, 2, {"dns  FAILURE": 3, "oom": 1}),
        ],
        [calibration("dec2", (50, 0.8), 0.8)],
    )
    return before, after


def test_diff_reports_root_causes_services_bands_and_thresholds_by_hand(pair: tuple[Any, Any]) -> None:
    before, after = pair
    diff = diff_snapshots(before, after)

    # "DNS failure" and "dns  FAILURE" are one cause (normalised); "disk full" moved from checkout to billing.
    assert diff["root_causes"]["new"] == [{"root_cause": "oom", "count": 1, "services": ["checkout"]}]
    assert diff["root_causes"]["retired"] == [{"root_cause": "cache miss", "count": 1, "services": ["search"]}]
    assert diff["root_causes"]["by_service"] == {
        "billing": {"new": [{"root_cause": "disk full", "count": 2}], "retired": []},
        "checkout": {"new": [{"root_cause": "oom", "count": 1}], "retired": [{"root_cause": "disk full", "count": 2}]},
        "search": {"new": [], "retired": [{"root_cause": "cache miss", "count": 1}]},
    }
    checkout = diff["service_metrics"]["checkout"]
    assert checkout["total_incidents"] == {"from": 3, "to": 4, "delta": 1}
    assert checkout["fp_rate"]["from"] == pytest.approx(1 / 3) and checkout["fp_rate"]["to"] == 0.5
    assert checkout["fp_rate"]["delta"] == pytest.approx(0.5 - 1 / 3)
    assert diff["services"] == {"added": ["billing"], "removed": ["search"]}
    # HIGH is identical on both sides, so only VERY_HIGH is reported.
    assert list(diff["bands"]) == ["VERY_HIGH"]
    assert diff["bands"]["VERY_HIGH"]["n"] == {"from": 40, "to": 50, "delta": 10}
    assert diff["bands"]["VERY_HIGH"]["accuracy"]["delta"] == pytest.approx(-0.1)
    assert diff["thresholds"] == {"0.8": {"from": 0.75, "to": 0.8, "delta": pytest.approx(0.05)}}


def test_markdown_table_lists_each_change(pair: tuple[Any, Any]) -> None:
    text = diff_markdown(diff_snapshots(*pair))
    lines = text.splitlines()
    assert lines[2] == "| item | before | after | change |"
    assert "| checkout: incidents | 3 | 4 | +1 |" in lines
    assert "| checkout: fp rate | 0.333 | 0.500 | +0.167 |" in lines
    assert "| root cause 'oom' | – | 1 (checkout) | new |" in lines
    assert "| root cause 'cache miss' | 1 (search) | – | retired |" in lines
    assert "| band VERY_HIGH accuracy (n) | 0.900 (40) | 0.800 (50) | -0.100 |" in lines
    assert "| threshold 0.8 | 0.7500 | 0.8000 | +0.0500 |" in lines
    same = diff_markdown(diff_snapshots(pair[0], pair[0]))
    assert same.endswith("No change (same content).")


def test_week_and_its_days_are_not_counted_twice() -> None:
    sunday = datetime(2026, 1, 4, tzinfo=UTC)
    days = [summary("checkout", sunday + timedelta(days=i), sunday + timedelta(days=i + 1), 2, 0, {"oom": 2})
            for i in range(7)]
    week = summary("checkout", sunday, sunday + timedelta(days=7), 14, 0, {"oom": 14})
    empty = build_snapshot("WEEKLY", sunday - timedelta(days=7), sunday, None, [])
    held = build_snapshot("WEEKLY", sunday, sunday + timedelta(days=7), None, [*days, week])
    assert diff_snapshots(empty, held)["root_causes"]["new"] == [
        {"root_cause": "oom", "count": 14, "services": ["checkout"]}
    ]


def test_accepts_dicts_and_json_and_is_the_analyst_api(pair: tuple[Any, Any]) -> None:
    before, after = pair
    expected = diff_snapshots(before, after)
    assert opx.diff_snapshots is diff_snapshots
    assert diff_snapshots(before.to_dict(), after.to_json()) == expected


def test_bad_input_names_the_problem(pair: tuple[Any, Any]) -> None:
    before, _ = pair
    with pytest.raises(TypeError, match="snapshot: int is not a Snapshot"):
        diff_snapshots(before, 3)  # type: ignore[arg-type]
    tampered = json.loads(before.to_json())
    tampered["counts"]["outcomes"] = 99
    with pytest.raises(ValueError, match="content_hash"):
        diff_snapshots(tampered, before)
