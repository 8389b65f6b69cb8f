"""Known-answer and property tests of snapshot building and diffing."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opx_learning.core.schema import OUTCOME_SCHEMA
from opx_learning.core.snapshots import Snapshot, build_snapshot, diff_snapshots
from opx_learning.core.windows import WindowError

JAN1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN2 = datetime(2026, 1, 2, tzinfo=UTC)


def outcomes(rows: list[tuple[str, str, datetime]]) -> pl.DataFrame:
    """A canonical outcomes frame from (outcome_id, service, recorded_at) triples."""
    n = len(rows)
    return pl.DataFrame(
        {
            "outcome_id": [r[0] for r in rows],
            "incident_id": [f"inc-{r[0]}" for r in rows],
            "service": [r[1] for r in rows],
            "recorded_at": [r[2] for r in rows],
            "validated_at": [r[2] + timedelta(minutes=5) for r in rows],
            "true_positive": [True] * n,
            "false_positive": [False] * n,
            "root_cause": ["disk full"] * n,
            "resolution_type": ["FIXED"] * n,
            "ttd_ms": [1000.0] * n,
            "ttr_ms": [60000.0] * n,
            "predicted_confidence": [0.9] * n,
            "human_confidence_rating": [None] * n,
        },
        schema=OUTCOME_SCHEMA,
    )


def summary(service: str, start: datetime, end: datetime, total: int, fp: int) -> dict[str, Any]:
    """A pattern-summary row with the fields the snapshot reads."""
    return {
        "summary_id": hashlib.sha256(f"{service}:{start}:{end}:1".encode()).hexdigest(),
        "service": service,
        "window_start": start,
        "window_end": end,
        "version": "1",
        "total_incidents": total,
        "true_positives": total - fp,
        "false_positives": fp,
        "fp_rate": fp / total if total else 0.0,
        "top_root_causes": [{"value": "disk full", "count": total, "share": 1.0}],
    }


def calibration(cal_id: str, start: datetime, end: datetime, ece: float, t08: float | None) -> dict[str, Any]:
    """A calibration dict shaped like `Calibration.to_dict()` (the fields snapshots use)."""
    return {
        "calibration_id": cal_id,
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "version": "1",
        "ece": ece,
        "max_abs_drift": ece * 2,
        "drift_detected": False,
        "bands": [{"band": "VERY_HIGH", "n": 40, "accuracy": 0.9}],
        "recommended_thresholds": {"0.2": 0.1, "0.4": 0.3, "0.6": 0.5, "0.8": t08},
    }


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_counts_are_half_open_and_ids_sorted() -> None:
    frame = outcomes(
        [
            ("o3", "checkout", JAN1),  # at start: in
            ("o1", "search", JAN2 - timedelta(microseconds=1)),  # last instant: in
            ("o2", "checkout", JAN2),  # at end: out
            ("o0", "billing", JAN1 - timedelta(microseconds=1)),  # before start: out
        ]
    )
    summaries = [
        summary("checkout", JAN1, JAN2, 1, 0),  # same window: in
        summary("ALL", JAN1, JAN2, 2, 0),
        summary("search", JAN1, JAN1 + timedelta(hours=12), 1, 0),  # inside: in
        summary("search", JAN1 + timedelta(hours=12), JAN2 + timedelta(hours=1), 1, 0),  # straddles end: out
        summary("billing", JAN1 - timedelta(days=1), JAN1, 1, 0),  # before: out
    ]
    cals = [
        calibration("cal-in", JAN1, JAN1 + timedelta(hours=6), 0.02, 0.7),
        calibration("cal-before", JAN1 - timedelta(days=31), JAN1, 0.05, 0.8),
    ]
    snap = build_snapshot("DAILY", "2026-01-01", "2026-01-02", frame, summaries, cals)

    assert snap.counts == {"outcomes": 2, "summaries": 3, "calibrations": 1}
    assert snap.outcome_ids == ("o1", "o3")
    assert snap.services == ("checkout", "search")
    assert snap.calibration_ids == ("cal-in",)
    # "ALL" first, then by window, then service.
    assert [(s["service"], s["window_end"]) for s in snap.summaries] == [
        ("search", "2026-01-01T12:00:00.000Z"),
        ("ALL", "2026-01-02T00:00:00.000Z"),
        ("checkout", "2026-01-02T00:00:00.000Z"),
    ]
    assert snap.summary_ids == tuple(s["summary_id"] for s in snap.summaries)
    assert not snap.empty


def test_summaries_frame_is_made_json_safe() -> None:
    frame = pl.DataFrame([summary("checkout", JAN1, JAN2, 4, 1)]).with_columns(
        pl.col("window_start").cast(pl.Datetime("us", "UTC")), pl.col("window_end").cast(pl.Datetime("us", "UTC"))
    )
    snap = build_snapshot("daily", JAN1, JAN2, None, frame)
    held = snap.summaries[0]
    assert held["window_start"] == "2026-01-01T00:00:00.000Z"
    assert held["top_root_causes"] == [{"value": "disk full", "count": 4, "share": 1.0}]
    assert json.loads(snap.to_json())["summaries"][0] == held


def test_snapshot_id_and_content_hash_by_hand() -> None:
    frame = outcomes(
        [
            ("b", "search", datetime(2026, 1, 10, 23, 59, tzinfo=UTC)),
            ("a", "checkout", datetime(2026, 1, 4, tzinfo=UTC)),
            ("c", "checkout", datetime(2026, 1, 11, tzinfo=UTC)),
        ]
    )
    snap = build_snapshot("WEEKLY", "2026-01-04", "2026-01-10T23:59:59.999Z", frame, [], version=3)

    assert snap.window_end == datetime(2026, 1, 11, tzinfo=UTC)  # runbook-style end = end of day
    assert snap.snapshot_id == sha("WEEKLY:2026-01-04T00:00:00.000Z:2026-01-11T00:00:00.000Z:3")
    content = {
        "snapshot_type": "WEEKLY",
        "window_start": "2026-01-04T00:00:00.000Z",
        "window_end": "2026-01-11T00:00:00.000Z",
        "counts": {"outcomes": 2, "summaries": 0, "calibrations": 0},
        "services": ["checkout", "search"],
        "ids": {"outcome_ids": ["a", "b"], "summary_ids": [], "calibration_ids": []},
        "summaries": [],
        "calibration": None,
        "created_from": {
            "algorithm_version": "1",
            "calibration_id": None,
            "calibration_window_end": None,
            "calibration_before_window": None,
        },
    }
    assert snap.content_hash == sha(json.dumps(content, sort_keys=True, separators=(",", ":")))
    assert not snap.empty


def test_empty_window_is_a_valid_snapshot_with_the_latest_earlier_calibration() -> None:
    earlier = calibration("dec", datetime(2025, 12, 1, tzinfo=UTC), JAN1, 0.04, 0.75)
    later = calibration("jan", JAN1, datetime(2026, 2, 1, tzinfo=UTC), 0.01, 0.7)  # ends after the snapshot
    snap = build_snapshot("DAILY", "2026-01-05", "2026-01-06", outcomes([]), [], [later, earlier])

    assert snap.empty
    assert snap.counts == {"outcomes": 0, "summaries": 0, "calibrations": 0}
    assert snap.outcome_ids == snap.summary_ids == snap.calibration_ids == ()
    assert snap.calibration is not None
    assert snap.calibration["calibration_id"] == "dec"
    assert snap.calibration["recommended_thresholds"]["0.8"] == 0.75
    assert snap.created_from["calibration_before_window"] is True
    assert Snapshot.from_json(snap.to_json()) == snap


def test_latest_calibration_is_the_one_ending_last_before_the_end() -> None:
    cals = [
        calibration("nov", datetime(2025, 11, 1, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC), 0.03, 0.8),
        calibration("dec", datetime(2025, 12, 1, tzinfo=UTC), JAN1, 0.04, 0.75),
        calibration("jan", JAN1, datetime(2026, 2, 1, tzinfo=UTC), 0.01, 0.7),
    ]
    monthly = build_snapshot("MONTHLY", "2026-01-01", "2026-02-01", None, None, cals)
    assert monthly.calibration is not None
    assert monthly.calibration["calibration_id"] == "jan"
    assert monthly.calibration_ids == ("jan",)
    assert monthly.created_from["calibration_before_window"] is False
    # No calibration known yet.
    first = build_snapshot("CUSTOM", "2025-10-01", "2025-11-15", None, None, cals)
    assert first.calibration is None


@pytest.mark.parametrize("bad", ["HOURLY", "", "daily-ish"])
def test_bad_snapshot_type_names_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match=f"snapshot_type: '{bad}'"):
        build_snapshot(bad, JAN1, JAN2, None, None)


def test_bad_window_and_version_are_refused() -> None:
    with pytest.raises(WindowError, match="end"):
        build_snapshot("DAILY", JAN2, JAN1, None, None)
    with pytest.raises(ValueError, match="version: 0"):
        build_snapshot("DAILY", JAN1, JAN2, None, None, version=0)


def test_round_trip_and_tamper_detection() -> None:
    frame = outcomes([("a", "checkout", JAN1)])
    snap = build_snapshot("DAILY", JAN1, JAN2, frame, [summary("checkout", JAN1, JAN2, 1, 0)])
    data = json.loads(snap.to_json())
    assert Snapshot.from_dict(data) == snap
    data["counts"]["outcomes"] = 5
    with pytest.raises(ValueError, match="content_hash"):
        Snapshot.from_dict(data)
    del data["ids"]
    with pytest.raises(ValueError, match="'ids'"):
        Snapshot.from_dict(data)


def test_new_version_changes_id_but_not_hash() -> None:
    snap = build_snapshot("DAILY", JAN1, JAN2, outcomes([("a", "s", JAN1)]), [])
    v2 = snap.with_version(2)
    assert v2.content_hash == snap.content_hash
    assert v2.snapshot_id == sha("DAILY:2026-01-01T00:00:00.000Z:2026-01-02T00:00:00.000Z:2")
    assert v2.snapshot_id != snap.snapshot_id


_rows = st.lists(
    st.tuples(
        st.sampled_from(["checkout", "search", "billing"]),
        st.integers(min_value=-3600, max_value=90000),  # seconds from JAN1, some outside the day
    ),
    min_size=0,
    max_size=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_rows, data=st.data())
def test_id_and_hash_do_not_depend_on_row_order(rows: list[tuple[str, int]], data: st.DataObject) -> None:
    triples = [(f"o{i}", service, JAN1 + timedelta(seconds=sec)) for i, (service, sec) in enumerate(rows)]
    summaries = [summary(s, JAN1, JAN2, 3, 1) for s in ("ALL", "checkout", "search")]
    cals = [
        calibration("a", JAN1 - timedelta(days=31), JAN1, 0.1, 0.8),
        calibration("b", JAN1 - timedelta(days=62), JAN1 - timedelta(days=31), 0.2, 0.9),
    ]
    first = build_snapshot("DAILY", JAN1, JAN2, outcomes(triples), summaries, cals)
    shuffled = build_snapshot(
        "DAILY",
        JAN1,
        JAN2,
        outcomes(data.draw(st.permutations(triples))),
        data.draw(st.permutations(summaries)),
        data.draw(st.permutations(cals)),
    )
    assert (shuffled.snapshot_id, shuffled.content_hash) == (first.snapshot_id, first.content_hash)
    assert first.counts["outcomes"] == sum(1 for _, _, at in triples if JAN1 <= at < JAN2)


def test_diff_by_hand() -> None:
    day1 = [("o1", "checkout", JAN1), ("o2", "checkout", JAN1), ("o3", "search", JAN1)]
    before = build_snapshot(
        "DAILY",
        JAN1,
        JAN2,
        outcomes(day1),
        [summary("ALL", JAN1, JAN2, 3, 1), summary("checkout", JAN1, JAN2, 2, 1), summary("search", JAN1, JAN2, 1, 0)],
        [calibration("dec", datetime(2025, 12, 1, tzinfo=UTC), JAN1, 0.04, 0.75)],
    )
    day1_late = [("o1", "checkout", JAN1), ("o2", "checkout", JAN1), ("o4", "billing", JAN1), ("o5", "billing", JAN1)]
    after = build_snapshot(
        "DAILY",
        JAN1,
        JAN2,
        outcomes(day1_late),
        [
            summary("ALL", JAN1, JAN2, 4, 2),
            summary("billing", JAN1, JAN2, 2, 1),
            summary("checkout", JAN1, JAN2, 2, 1),
        ],
        [calibration("dec2", datetime(2025, 12, 1, tzinfo=UTC), JAN1, 0.06, None)],
        version=2,
    )
    diff = diff_snapshots(before, after)

    assert diff["same_content"] is False
    assert diff["from"]["version"] == 1 and diff["to"]["version"] == 2
    assert diff["counts"]["outcomes"] == {"from": 3, "to": 4, "delta": 1}
    assert diff["counts"]["summaries"] == {"from": 3, "to": 3, "delta": 0}
    assert diff["services"] == {"added": ["billing"], "removed": ["search"]}
    assert diff["outcome_ids"] == {"added": 2, "removed": 1, "added_sample": ["o4", "o5"], "removed_sample": ["o3"]}
    assert diff["summary_ids"]["added"] == 1 and diff["summary_ids"]["removed"] == 1
    assert diff["service_metrics"] == {
        "ALL": {
            "total_incidents": {"from": 3, "to": 4, "delta": 1},
            "true_positives": {"from": 2, "to": 2, "delta": 0},
            "false_positives": {"from": 1, "to": 2, "delta": 1},
            "fp_rate": {"from": 1 / 3, "to": 0.5, "delta": 0.5 - 1 / 3},
        },
        "billing": {
            "total_incidents": {"from": None, "to": 2, "delta": None},
            "true_positives": {"from": None, "to": 1, "delta": None},
            "false_positives": {"from": None, "to": 1, "delta": None},
            "fp_rate": {"from": None, "to": 0.5, "delta": None},
        },
        "search": {
            "total_incidents": {"from": 1, "to": None, "delta": None},
            "true_positives": {"from": 1, "to": None, "delta": None},
            "false_positives": {"from": 0, "to": None, "delta": None},
            "fp_rate": {"from": 0.0, "to": None, "delta": None},
        },
    }
    cal = diff["calibration"]
    assert cal["from_id"] == "dec" and cal["to_id"] == "dec2" and cal["changed"] is True
    assert cal["metrics"]["ece"] == {"from": 0.04, "to": 0.06, "delta": pytest.approx(0.02)}
    assert cal["recommended_thresholds"] == {"0.8": {"from": 0.75, "to": None, "delta": None}}
    assert diff_snapshots(before, before)["same_content"] is True
    assert diff_snapshots(before, before)["service_metrics"] == {}


def test_diff_does_not_double_count_a_week_and_its_days() -> None:
    sunday = datetime(2026, 1, 4, tzinfo=UTC)
    days = [summary("checkout", sunday + timedelta(days=i), sunday + timedelta(days=i + 1), 2, 1) for i in range(7)]
    week = summary("checkout", sunday, sunday + timedelta(days=7), 14, 7)
    with_week = build_snapshot("WEEKLY", sunday, sunday + timedelta(days=7), None, [*days, week])
    days_only = build_snapshot("WEEKLY", sunday, sunday + timedelta(days=7), None, days)
    assert diff_snapshots(days_only, with_week)["service_metrics"] == {}


def test_weekly_snapshot_of_real_summaries_and_calibration() -> None:
    from opx_learning.core.calibration import calibrate
    from opx_learning.core.patterns import extract_patterns
    from opx_learning.core.synthetic import generate_outcomes
    from opx_learning.core.windows import day_window, month_window, week_window

    frame = generate_outcomes("2025-12-01", "2026-01-11", per_day=60, seed=7)
    month = month_window(2025, 12)
    december = calibrate(frame, month.start, month.end)
    week = week_window(datetime(2026, 1, 4, tzinfo=UTC).date())
    daily = pl.concat([extract_patterns(frame, d.start, d.end) for d in map(day_window, week.days())])
    weekly = extract_patterns(frame, week.start, week.end)
    summaries = pl.concat([daily, weekly])

    snap = build_snapshot("WEEKLY", week.start, week.end, frame, summaries, [december])
    in_week = frame.filter((pl.col("recorded_at") >= week.start) & (pl.col("recorded_at") < week.end))

    assert snap.counts == {"outcomes": in_week.height, "summaries": summaries.height, "calibrations": 0}
    assert snap.outcome_ids == tuple(sorted(in_week["outcome_id"]))
    assert snap.services == tuple(sorted(in_week["service"].unique()))
    assert set(snap.summary_ids) == set(summaries["summary_id"])
    assert snap.calibration is not None
    assert snap.calibration["calibration_id"] == december.calibration_id
    assert snap.calibration["recommended_thresholds"] == december.to_dict()["recommended_thresholds"]
    assert snap.created_from["calibration_before_window"] is True
    # Same inputs in another order: same id and hash; JSON round trip is exact.
    again = build_snapshot(
        "WEEKLY", week.start, week.end, frame.reverse(), summaries.reverse(), [december.to_dict()]
    )
    assert (again.snapshot_id, again.content_hash) == (snap.snapshot_id, snap.content_hash)
    assert Snapshot.from_json(snap.to_json()) == snap
    # The week's summary and its seven days agree, so the diff against a days-only snapshot is empty.
    days_only = build_snapshot("WEEKLY", week.start, week.end, frame, daily, [december])
    diff = diff_snapshots(days_only, snap)
    assert diff["service_metrics"] == {}
    assert diff["summary_ids"]["added"] == weekly.height
