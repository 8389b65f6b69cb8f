"""Pattern extraction: known answers by hand and properties against a pure-Python reference."""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opx_learning.core.patterns import (
    SUMMARY_SCHEMA,
    extract_patterns,
    normalize_root_cause,
    summary_id,
)
from opx_learning.core.schema import OUTCOME_COLUMNS, OUTCOME_SCHEMA
from opx_learning.core.windows import Window, day_window, week_window

T0 = datetime(2026, 1, 4, tzinfo=UTC)  # a Sunday


def at(days: float = 0, **delta: float) -> datetime:
    return T0 + timedelta(days=days, **delta)


def outcomes(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A canonical outcomes frame; unspecified fields get plain defaults."""
    full = []
    for i, row in enumerate(rows):
        tp = row.get("true_positive", True)
        recorded = row.get("recorded_at", at(0, hours=12))
        full.append(
            {
                "outcome_id": f"o-{i}",
                "incident_id": f"i-{i}",
                "service": "api",
                "recorded_at": recorded,
                "validated_at": recorded,
                "true_positive": tp,
                "false_positive": not tp,
                "root_cause": "disk full",
                "resolution_type": "FIXED",
                "ttd_ms": 1000.0,
                "ttr_ms": 5000.0,
                "predicted_confidence": 0.5,
                "human_confidence_rating": None,
            }
            | row
        )
    return pl.DataFrame(full, schema=OUTCOME_SCHEMA).select(OUTCOME_COLUMNS)


def by_service(result: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["service"]: row for row in result.to_dicts()}


def test_known_answer_per_service_and_all() -> None:
    frame = outcomes(
        [
            {"ttd_ms": 100.0, "ttr_ms": 10.0, "human_confidence_rating": 0.5},
            {"ttd_ms": 200.0, "ttr_ms": 20.0, "human_confidence_rating": None},
            {"ttd_ms": 300.0, "ttr_ms": 30.0, "human_confidence_rating": 0.7},
            {"ttd_ms": 400.0, "ttr_ms": 40.0, "true_positive": False},
            {"service": "web", "ttd_ms": 1000.0, "true_positive": False, "human_confidence_rating": 0.9},
            {"service": "web", "ttd_ms": 3000.0, "true_positive": False, "resolution_type": "FALSE_ALARM"},
        ]
    )
    result = extract_patterns(frame, "2026-01-04", "2026-01-05")
    assert result.schema == pl.Schema(SUMMARY_SCHEMA)
    assert result["service"].to_list() == ["ALL", "api", "web"]
    rows = by_service(result)

    api = rows["api"]
    assert (api["total_incidents"], api["true_positives"], api["false_positives"]) == (4, 3, 1)
    assert api["fp_rate"] == 0.25 and api["detection_warning"] is False
    assert api["avg_confidence"] == pytest.approx(0.6)  # (0.5 + 0.7) / 2, null ignored
    assert api["avg_ttd_ms"] == 250.0
    assert api["p50_ttd_ms"] == 250.0  # rank 0.5 * 3 = 1.5 -> 200 + 0.5 * 100
    assert api["p90_ttd_ms"] == pytest.approx(370.0)  # rank 0.9 * 3 = 2.7 -> 300 + 0.7 * 100
    assert api["p90_ttr_ms"] == pytest.approx(37.0)
    assert api["top_root_causes"] == [{"value": "disk full", "count": 4, "share": 1.0}]
    assert api["emerging_root_causes"] == []

    web = rows["web"]
    assert web["fp_rate"] == 1.0 and web["detection_warning"] is True
    assert web["avg_confidence"] == 0.9
    assert web["top_resolutions"] == [
        {"value": "FALSE_ALARM", "count": 1, "share": 0.5},
        {"value": "FIXED", "count": 1, "share": 0.5},
    ]

    overall = rows["ALL"]
    assert (overall["total_incidents"], overall["true_positives"], overall["false_positives"]) == (6, 3, 3)
    assert overall["fp_rate"] == 0.5 and overall["detection_warning"] is True
    assert overall["avg_confidence"] == pytest.approx(0.7)  # (0.5 + 0.7 + 0.9) / 3
    assert overall["avg_ttd_ms"] == pytest.approx(5000 / 6)  # 100+200+300+400+1000+3000 = 5000
    assert overall["p50_ttd_ms"] == 350.0  # sorted 100..3000, rank 2.5 -> 300 + 0.5 * 100
    assert overall["p90_ttd_ms"] == 2000.0  # rank 4.5 -> 1000 + 0.5 * 2000
    assert overall["top_resolutions"] == [
        {"value": "FIXED", "count": 5, "share": 5 / 6},
        {"value": "FALSE_ALARM", "count": 1, "share": 1 / 6},
    ]
    window = Window.parse("2026-01-04", "2026-01-05")
    assert overall["window_start"] == window.start and overall["window_end"] == window.end
    assert overall["version"] == "1"
    text = "ALL:2026-01-04T00:00:00.000Z:2026-01-05T00:00:00.000Z:1"
    assert overall["summary_id"] == hashlib.sha256(text.encode()).hexdigest() == summary_id("ALL", window)
    assert api["summary_id"] == hashlib.sha256(text.replace("ALL", "api").encode()).hexdigest()


def test_lazy_input_gives_the_same_result() -> None:
    frame = outcomes([{"service": s, "ttd_ms": float(i)} for i, s in enumerate("abcab")])
    eager = extract_patterns(frame, "2026-01-04", "2026-01-05")
    assert eager.equals(extract_patterns(frame.lazy(), "2026-01-04", "2026-01-05"))


def test_fp_rate_of_exactly_30_percent_is_not_a_warning() -> None:
    frame = outcomes([{"true_positive": i >= 3} for i in range(10)])  # 3 FP / 10
    row = by_service(extract_patterns(frame, "2026-01-04", "2026-01-05"))["api"]
    assert row["fp_rate"] == pytest.approx(0.3) and row["detection_warning"] is False
    frame = outcomes([{"true_positive": i >= 4} for i in range(13)])  # 4 / 13 = 0.3077
    assert by_service(extract_patterns(frame, "2026-01-04", "2026-01-05"))["api"]["detection_warning"] is True


def test_root_cause_spellings_are_grouped_under_one_label() -> None:
    spellings = ["Disk Full", "Disk Full", "  disk   full ", "DISK\tFULL", "disk full", "disk full", "OOM", "oom "]
    frame = outcomes([{"root_cause": s} for s in spellings])
    row = by_service(extract_patterns(frame, "2026-01-04", "2026-01-05"))["api"]
    # The label is the normalised cause, whichever spelling is most frequent on the day.
    assert row["top_root_causes"] == [
        {"value": "disk full", "count": 6, "share": 6 / 8},
        {"value": "oom", "count": 2, "share": 2 / 8},
    ]
    other_day = outcomes([{"root_cause": s} for s in ["DISK FULL", "DISK FULL", "disk full"]])
    assert by_service(extract_patterns(other_day, "2026-01-04", "2026-01-05"))["api"]["top_root_causes"][0]["value"] == "disk full"


def test_top_ten_ordering_breaks_ties_by_value() -> None:
    # counts: c00..c11 -> 3,3,3,2,2,2,2,2,2,2,2,1 ; "b" appears 3 times too.
    counts = {f"c{i:02d}": 3 if i < 3 else (1 if i == 11 else 2) for i in range(12)} | {"b": 3}
    frame = outcomes([{"root_cause": cause} for cause, n in counts.items() for _ in range(n)])
    total = sum(counts.values())  # 9 + 16 + 1 + 3 = 29
    row = by_service(extract_patterns(frame, "2026-01-04", "2026-01-05"))["api"]
    expected = ["b", "c00", "c01", "c02", "c03", "c04", "c05", "c06", "c07", "c08"]
    assert [item["value"] for item in row["top_root_causes"]] == expected
    assert [item["count"] for item in row["top_root_causes"]] == [3, 3, 3, 3, 2, 2, 2, 2, 2, 2]
    assert row["top_root_causes"][0]["share"] == 3 / total


def test_windows_are_half_open_and_runbook_ends_mean_end_of_day() -> None:
    frame = outcomes(
        [
            {"recorded_at": at(0), "root_cause": "first instant"},
            {"recorded_at": at(1, microseconds=-1), "root_cause": "last microsecond"},
            {"recorded_at": at(1), "root_cause": "next day"},
            {"recorded_at": at(0, microseconds=-1), "root_cause": "day before"},
        ]
    )
    for end in ("2026-01-05", "2026-01-04T23:59:59.999Z", datetime(2026, 1, 5)):
        row = by_service(extract_patterns(frame, "2026-01-04T00:00:00.000Z", end))["api"]
        assert row["total_incidents"] == 2
        assert sorted(item["value"] for item in row["top_root_causes"]) == ["first instant", "last microsecond"]
        assert row["window_end"] == datetime(2026, 1, 5, tzinfo=UTC)


def test_empty_window_yields_only_the_all_row_with_zeros() -> None:
    frame = outcomes([{"recorded_at": at(0)}])
    result = extract_patterns(frame, "2026-02-01", "2026-02-02")
    assert result.schema == pl.Schema(SUMMARY_SCHEMA)
    assert result.height == 1
    row = result.to_dicts()[0]
    assert row["service"] == "ALL"
    assert (row["total_incidents"], row["true_positives"], row["false_positives"], row["fp_rate"]) == (0, 0, 0, 0.0)
    for name in ("avg_confidence", "avg_ttd_ms", "p50_ttd_ms", "p90_ttd_ms", "avg_ttr_ms", "p50_ttr_ms", "p90_ttr_ms"):
        assert row[name] is None
    assert row["top_root_causes"] == row["top_resolutions"] == row["emerging_root_causes"] == []
    assert row["detection_warning"] is False
    assert extract_patterns(pl.DataFrame(schema=OUTCOME_SCHEMA), "2026-02-01", "2026-02-02").height == 1


def test_service_filter_returns_all_row_over_that_service_only() -> None:
    frame = outcomes([{"service": "api"}, {"service": "api", "true_positive": False}, {"service": "web"}])
    result = extract_patterns(frame, "2026-01-04", "2026-01-05", service="api")
    assert result["service"].to_list() == ["ALL", "api"]
    assert result["total_incidents"].to_list() == [2, 2]
    assert result["fp_rate"].to_list() == [0.5, 0.5]
    none = extract_patterns(frame, "2026-01-04", "2026-01-05", service="db")
    assert none["service"].to_list() == ["ALL"] and none["total_incidents"].to_list() == [0]
    assert extract_patterns(frame, "2026-01-04", "2026-01-05", service="ALL").height == 3


# ---- reference implementation and properties ----------------------------------------------------------

CAUSES = ["disk full", "Disk Full", " disk  full", "OOM", "oom", "network", "Network Partition", "dns",
          "cert expired", "a", "b", "c", "d", "e"]


def reference_percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def reference_top(values: list[str], total: int, normalize: bool) -> list[dict[str, Any]]:
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for value in values:
        groups[" ".join(value.split()).casefold() if normalize else value][value] += 1
    items = []
    for key, spellings in groups.items():
        items.append((sum(spellings.values()), key))
    items.sort(key=lambda item: (-item[0], item[1]))
    return [{"value": v, "count": n, "share": n / total} for n, v in items[:10]]


def reference_summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["service"]].append(row)
        groups["ALL"].append(row)
    out = {}
    for service, members in groups.items():
        n = len(members)
        ratings = [m["human_confidence_rating"] for m in members if m["human_confidence_rating"] is not None]
        fp = sum(not m["true_positive"] for m in members)  # the builder sets false_positive = not tp
        summary = {
            "total_incidents": n,
            "true_positives": sum(m["true_positive"] for m in members),
            "false_positives": fp,
            "fp_rate": fp / n,
            "detection_warning": fp / n > 0.3,
            "avg_confidence": sum(ratings) / len(ratings) if ratings else None,
            "top_root_causes": reference_top([m["root_cause"] for m in members], n, normalize=True),
            "top_resolutions": reference_top([m["resolution_type"] for m in members], n, normalize=False),
        }
        for column in ("ttd", "ttr"):
            values = [m[f"{column}_ms"] for m in members]
            summary[f"avg_{column}_ms"] = sum(values) / n
            summary[f"p50_{column}_ms"] = reference_percentile(values, 0.5)
            summary[f"p90_{column}_ms"] = reference_percentile(values, 0.9)
        out[service] = summary
    if not out:
        out["ALL"] = {"total_incidents": 0, "true_positives": 0, "false_positives": 0, "fp_rate": 0.0,
                      "detection_warning": False, "avg_confidence": None, "top_root_causes": [],
                      "top_resolutions": []}
        out["ALL"] |= {f"{k}_{c}_ms": None for k in ("avg", "p50", "p90") for c in ("ttd", "ttr")}
    return out


def assert_matches_reference(result: pl.DataFrame, rows: list[dict[str, Any]]) -> None:
    expected = reference_summary(rows)
    actual = by_service(result)
    assert list(actual) == ["ALL", *sorted(s for s in expected if s != "ALL")]
    for service, summary in expected.items():
        for name, value in summary.items():
            got = actual[service][name]
            if isinstance(value, list):
                assert [i["value"] for i in got] == [i["value"] for i in value], (service, name)
                assert [i["count"] for i in got] == [i["count"] for i in value], (service, name)
                assert [i["share"] for i in got] == pytest.approx([i["share"] for i in value]), (service, name)
            elif isinstance(value, float):
                assert got == pytest.approx(value, rel=1e-9, abs=1e-9), (service, name)
            else:
                assert got == value, (service, name)


MS_PER_DAY = 86_400_000
row_strategy = st.fixed_dictionaries(
    {
        "service": st.sampled_from(["api", "web", "db"]),
        "recorded_at": st.one_of(
            st.integers(-MS_PER_DAY, 9 * MS_PER_DAY),
            st.sampled_from([k * MS_PER_DAY + d for k in range(-1, 9) for d in (-1, 0)]),
        ).map(lambda ms: T0 + timedelta(milliseconds=ms)),
        "true_positive": st.booleans(),
        "root_cause": st.sampled_from(CAUSES),
        "resolution_type": st.sampled_from(["FIXED", "MITIGATED", "FALSE_ALARM", "DUPLICATE", "OTHER"]),
        "ttd_ms": st.integers(0, 10**6).map(float),
        "ttr_ms": st.floats(0, 1e8, allow_nan=False),
        "human_confidence_rating": st.one_of(st.none(), st.floats(0, 1)),
    }
)
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(st.lists(row_strategy, max_size=60), st.randoms(use_true_random=False))
def test_row_order_does_not_change_the_summary(rows: list[dict[str, Any]], rnd: random.Random) -> None:
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    week = week_window(T0.date())
    first = extract_patterns(outcomes(rows), week.start, week.end)
    second = extract_patterns(outcomes(shuffled), week.start, week.end)
    assert first.select(pl.exclude("^avg_.*$")).equals(second.select(pl.exclude("^avg_.*$")))
    for name in ("avg_confidence", "avg_ttd_ms", "avg_ttr_ms"):
        a, b = first[name].to_list(), second[name].to_list()
        assert [x is None for x in a] == [x is None for x in b]  # an empty group's mean is null
        present = [(x, y) for x, y in zip(a, b, strict=True) if x is not None]
        assert [x for x, _ in present] == pytest.approx([y for _, y in present], rel=1e-12)


@PROPERTY_SETTINGS
@given(st.lists(row_strategy, max_size=60))
def test_weekly_summary_equals_the_union_of_its_seven_days(rows: list[dict[str, Any]]) -> None:
    frame = outcomes(rows)
    week = week_window(T0.date())
    days = [day_window(day) for day in week.days()]
    assert len(days) == 7
    in_days = [r for r in rows if any(d.contains(r["recorded_at"]) for d in days)]
    weekly = extract_patterns(frame, "2026-01-04", "2026-01-10T23:59:59.999Z")
    assert_matches_reference(weekly, in_days)

    daily = [by_service(extract_patterns(frame, d.start, d.end)) for d in days]
    for service, row in by_service(weekly).items():
        parts = [d[service] for d in daily if service in d and d[service]["total_incidents"]]
        for name in ("total_incidents", "true_positives", "false_positives"):
            assert sum(p[name] for p in parts) == row[name]
        if row["total_incidents"]:
            weighted = sum(p["avg_ttd_ms"] * p["total_incidents"] for p in parts) / row["total_incidents"]
            assert weighted == pytest.approx(row["avg_ttd_ms"], rel=1e-9, abs=1e-9)
            resolutions: Counter[str] = Counter()
            causes: Counter[str] = Counter()
            for p in parts:
                for item in p["top_resolutions"]:
                    resolutions[item["value"]] += item["count"]
                for item in p["top_root_causes"]:
                    causes[normalize_root_cause(item["value"])] += item["count"]
            assert resolutions == Counter({i["value"]: i["count"] for i in row["top_resolutions"]})
            if len(row["top_root_causes"]) < 10:  # no cut-off: every cause of the week is listed
                weekly_causes = {normalize_root_cause(i["value"]): i["count"] for i in row["top_root_causes"]}
                assert causes == Counter(weekly_causes)


@PROPERTY_SETTINGS
@given(st.lists(row_strategy, max_size=40), st.sampled_from(["api", "web", "db"]))
def test_service_filter_matches_reference(rows: list[dict[str, Any]], service: str) -> None:
    week = week_window(T0.date())
    result = extract_patterns(outcomes(rows), week.start, week.end, service=service)
    kept = [r for r in rows if r["service"] == service and week.contains(r["recorded_at"])]
    assert_matches_reference(result, kept)


def test_integration_with_synthetic_generator() -> None:
    synthetic = pytest.importorskip("opx_learning.core.synthetic")
    frame = synthetic.generate_outcomes("2026-01-01", "2026-01-08", seed=3)
    result = extract_patterns(frame, "2026-01-01", "2026-01-08")
    in_window = frame.filter(
        (pl.col("recorded_at") >= datetime(2026, 1, 1, tzinfo=UTC))
        & (pl.col("recorded_at") < datetime(2026, 1, 8, tzinfo=UTC))
    )
    rows = by_service(result)
    assert rows["ALL"]["total_incidents"] == in_window.height
    assert sum(r["total_incidents"] for s, r in rows.items() if s != "ALL") == in_window.height
