"""Seeded, realistic synthetic outcomes for demos, tests and benchmarks; fully vectorised."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import polars as pl

from opx_learning.core.schema import OUTCOME_COLUMNS, RESOLUTION_TYPES, ResolutionType
from opx_learning.core.windows import Instant, Window, WindowError, to_utc, to_utc_end

DEFAULT_SERVICES: tuple[str, ...] = (
    "order-service",
    "payment-service",
    "checkout-service",
    "inventory-service",
    "auth-service",
    "user-service",
    "search-service",
    "notification-service",
    "shipping-service",
    "recommendation-service",
    "api-gateway",
    "billing-service",
)
NOISY_SERVICE = "notification-service"
EMERGING_ROOT_CAUSE = "connection pool exhausted"
TRUE_POSITIVE_CAUSES: tuple[str, ...] = (
    "database connection timeout",
    "memory leak",
    "deployment regression",
    "cpu saturation",
    "disk full",
    "dependency outage",
    "configuration error",
    "network partition",
    "certificate expired",
    "rate limit exceeded",
    "cache stampede",
    "dns resolution failure",
)
FALSE_POSITIVE_CAUSES: tuple[str, ...] = (
    "transient spike",
    "monitoring noise",
    "threshold too sensitive",
    "planned maintenance",
)
# How often each spelling of a cause appears: as written, Title Case, UPPER, padded spaces, Capitalized.
_SPELLING_WEIGHTS = np.array([0.70, 0.10, 0.07, 0.08, 0.05])
# Resolution mix by classification, in RESOLUTION_TYPES order (FIXED, MITIGATED, FALSE_ALARM, DUPLICATE, OTHER).
_TP_RESOLUTIONS = np.array([0.55, 0.30, 0.0, 0.05, 0.10])
_FP_RESOLUTIONS = np.array([0.0, 0.0, 0.85, 0.10, 0.05])
_US_PER_DAY = 86_400_000_000
_US_PER_MS = 1_000
_CONCENTRATION = 3.0
_LUT_SIZE = 65_536


def generate_outcomes(
    start: Instant | None = None,
    end: Instant | None = None,
    *,
    days: int | None = None,
    per_day: int = 400,
    services: int | Sequence[str] | None = None,
    seed: int = 0,
    overconfident_months: Sequence[str] = (),
    overconfidence: float = 0.2,
    drift: float = 0.0,
    noisy_service: str | None = "auto",
    noisy_fp_rate: float = 0.45,
    base_fp_rate: float = 0.12,
    emerging_root_cause: str | None = EMERGING_ROOT_CAUSE,
    emerging_from: Instant | None = None,
    emerging_share: float = 0.15,
    null_confidence_rate: float = 0.02,
    null_rating_rate: float = 0.05,
    n: int | None = None,
) -> pl.DataFrame:
    """Generate valid outcome records with realistic structure and controllable miscalibration.

    Each service draws its predicted confidence from a Beta distribution whose mean is
    `1 - fp_rate`, and the label is a Bernoulli draw of that confidence, so the data is calibrated
    by default. Arrivals follow a diurnal curve (peak 14:00 UTC, quieter weekends), detection and
    resolution times are lognormal, root causes come in messy spellings (case and whitespace
    variants of the same cause), and false positives resolve mostly as FALSE_ALARM.

    Args:
        start: first instant (date, datetime or ISO string); default `end - days`.
        end: end of the half-open range; a runbook-style `...T23:59:59.999Z` means end of that day.
            Default: `start + days`, or today 00:00 UTC when `start` is also omitted.
        days: length of the range in days when `start` or `end` is omitted (default 90).
        per_day: mean outcomes per day (Poisson per day, weekdays busier than weekends).
        services: number of services (taken from `DEFAULT_SERVICES`, then `service-13`, ...)
            or explicit names; default the 12 `DEFAULT_SERVICES`.
        seed: random seed; identical arguments give identical frames.
        overconfident_months: `"YYYY-MM"` months in which the true-positive probability is
            `overconfidence` lower than the predicted confidence.
        overconfidence: size of that gap in the overconfident months.
        drift: gap that grows linearly from 0 at `start` to `drift` at `end` (gradual drift).
        noisy_service: a service whose false-positive rate is `noisy_fp_rate`; `"auto"` picks
            `notification-service` when present, else the last service; None disables it.
        noisy_fp_rate: false-positive rate of the noisy service.
        base_fp_rate: typical false-positive rate of the other services (each varies +-30 %).
        emerging_root_cause: a true-positive cause that only appears from `emerging_from` on;
            None disables it.
        emerging_from: first day of the emerging cause; default the middle day of the range.
        emerging_share: share of true positives with the emerging cause once it appears.
        null_confidence_rate: share of rows whose `predicted_confidence` is null.
        null_rating_rate: share of rows whose `human_confidence_rating` is null.
        n: exact number of rows, spread over the days by the same weights (overrides `per_day`).

    Returns:
        pl.DataFrame: rows with exactly the canonical `OUTCOME_SCHEMA`, all valid.

    Raises:
        ValueError: an argument is out of range (the message names it and its value).
    """
    window = generation_window(start, end, days)
    names = _service_names(services)
    noisy = _noisy(noisy_service, names)
    for field, value in {
        "noisy_fp_rate": noisy_fp_rate,
        "base_fp_rate": base_fp_rate,
        "emerging_share": emerging_share,
        "null_confidence_rate": null_confidence_rate,
        "null_rating_rate": null_rating_rate,
        "overconfidence": overconfidence,
    }.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{field}: {value!r} must be within [0, 1]")
    if n is None and per_day < 0:
        raise ValueError(f"per_day: {per_day!r} must be >= 0")
    if n is not None and n < 0:
        raise ValueError(f"n: {n!r} must be >= 0")

    start_us = _epoch_us(window.start)
    end_us = _epoch_us(window.end)
    day_list = window.days()
    day_mid = np.array([_epoch_us(datetime.combine(d, time(), tzinfo=UTC)) for d in day_list], dtype=np.int64)
    day_lo = np.maximum(day_mid, start_us)
    day_hi = np.minimum(day_mid + _US_PER_DAY, end_us)
    weekday = np.array([0.75 if d.weekday() >= 5 else 1.1 for d in day_list])
    weights = weekday * (day_hi - day_lo) / _US_PER_DAY

    entropy = [seed & 0xFFFFFFFF, start_us // 1_000_000, end_us // 1_000_000, per_day if n is None else n + 1]
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    counts = rng.multinomial(n, weights / weights.sum()) if n is not None else rng.poisson(per_day * weights)
    day_idx = np.repeat(np.arange(len(day_list), dtype=np.int32), counts)
    size = int(day_idx.size)

    hours = np.arange(24)
    hour_weights = 1.0 + 0.7 * np.cos(2 * np.pi * (hours - 14) / 24)
    hour = _draw(rng, hour_weights, size)
    offset = ((hour + rng.random(size)) * 3_600_000_000).astype(np.int64)
    recorded = day_mid[day_idx] + offset
    lo, hi = day_lo[day_idx], day_hi[day_idx]
    outside = (recorded < lo) | (recorded >= hi)
    if outside.any():
        spread = (rng.random(size) * (hi - lo)).astype(np.int64)
        recorded = np.where(outside, lo + spread, recorded)

    service_weights = 1.0 / np.sqrt(np.arange(1, len(names) + 1))
    service = _draw(rng, service_weights, size).astype(np.int32)
    fp_rates = np.clip(base_fp_rate * rng.uniform(0.7, 1.3, len(names)), 0.0, 1.0)
    if noisy is not None:
        fp_rates[names.index(noisy)] = noisy_fp_rate
    mean_conf = np.clip(1.0 - fp_rates, 0.01, 0.99)[service]
    confidence = rng.beta(mean_conf * _CONCENTRATION, (1.0 - mean_conf) * _CONCENTRATION)

    gap = drift * (recorded - start_us) / max(end_us - start_us, 1)
    if overconfident_months:
        months = {_month(m) for m in overconfident_months}
        day_flag = np.array([(d.year, d.month) in months for d in day_list])
        gap = gap + overconfidence * day_flag[day_idx]
    true_positive = rng.random(size) < np.clip(confidence - gap, 0.0, 1.0)

    root_index = _root_causes(rng, size, service, true_positive, day_idx, day_list, emerging_root_cause,
                              emerging_from, emerging_share)
    bucket = rng.integers(0, _LUT_SIZE, size, dtype=np.uint16)
    resolution = np.where(true_positive, _table(_TP_RESOLUTIONS)[bucket], _table(_FP_RESOLUTIONS)[bucket])

    night = hour < 6
    ttd_factor = rng.uniform(0.6, 1.8, len(names))[service]
    ttr_factor = rng.uniform(0.6, 1.8, len(names))[service]
    ttd = rng.lognormal(np.log(240_000.0), 0.9, size) * ttd_factor * np.where(true_positive, 1.0, 0.6)
    ttr_median = np.where(true_positive, 2_700_000.0, 480_000.0) * ttr_factor * np.where(night, 1.4, 1.0)
    ttr = rng.lognormal(np.log(ttr_median), 1.0)
    review = rng.lognormal(np.log(7_200_000.0), 0.8, size)
    validated = recorded + ((np.round(ttr) + review) * _US_PER_MS).astype(np.int64)

    rating = rng.normal(np.where(true_positive, 0.75, 0.3), np.where(true_positive, 0.12, 0.15))
    rating = np.where(rng.random(size) < null_rating_rate, np.nan, np.round(np.clip(rating, 0.0, 1.0), 2))
    predicted = np.where(rng.random(size) < null_confidence_rate, np.nan, np.round(confidence, 4))

    # Fixed-width random suffixes: ids stay unique across runs with other arguments or seeds.
    outcome_suffix = rng.integers(10**11, 10**12, size)
    incident_number = rng.integers(10**9, 10**10, size)
    spellings = _spellings(emerging_root_cause)

    frame = pl.DataFrame(
        {
            "recorded_us": recorded,
            "outcome_suffix": outcome_suffix,
            "incident_number": incident_number,
            "service_code": service,
            "validated_us": validated,
            "true_positive": true_positive,
            "root_index": root_index,
            "resolution_code": resolution.astype(np.uint32),
            "ttd_ms": np.round(ttd),
            "ttr_ms": np.round(ttr),
            "predicted_confidence": predicted,
            "human_confidence_rating": rating,
        }
    )
    return frame.select(
        pl.format("out-{}-{}", pl.col("recorded_us") // _US_PER_MS, pl.col("outcome_suffix")).alias("outcome_id"),
        pl.format("inc-{}", pl.col("incident_number")).alias("incident_id"),
        pl.lit(pl.Series(names, dtype=pl.String)).gather(pl.col("service_code")).alias("service"),
        pl.col("recorded_us").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("recorded_at"),
        pl.col("validated_us").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("validated_at"),
        pl.col("true_positive"),
        (~pl.col("true_positive")).alias("false_positive"),
        pl.lit(pl.Series(spellings, dtype=pl.String)).gather(pl.col("root_index")).alias("root_cause"),
        pl.lit(pl.Series(RESOLUTION_TYPES, dtype=ResolutionType)).gather(pl.col("resolution_code")).alias(
            "resolution_type"
        ),
        pl.col("ttd_ms"),
        pl.col("ttr_ms"),
        pl.col("predicted_confidence").fill_nan(None),
        pl.col("human_confidence_rating").fill_nan(None),
    ).select(OUTCOME_COLUMNS)


def _table(weights: np.ndarray) -> np.ndarray:
    """Lookup table from a uniform 16-bit bucket to a category drawn with `weights`."""
    cdf = np.cumsum(weights) / np.sum(weights)
    centers = (np.arange(_LUT_SIZE) + 0.5) / _LUT_SIZE
    return np.searchsorted(cdf, centers, side="right").clip(max=len(weights) - 1).astype(np.uint16)


def _draw(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    """Categorical draws by table lookup (probabilities resolved to 1/65536, far faster than `choice`)."""
    return _table(weights)[rng.integers(0, _LUT_SIZE, size, dtype=np.uint16)]


def generation_window(start: Instant | None = None, end: Instant | None = None, days: int | None = None) -> Window:
    """The range `generate_outcomes` covers for these arguments (default: 90 days ending today 00:00 UTC).

    Raises:
        ValueError: a bound is unreadable, `days` is not positive, all three are given, or end <= start.
    """
    if days is not None and days <= 0:
        raise ValueError(f"days: {days!r} must be a positive number of days")
    if start is not None and end is not None and days is not None:
        raise ValueError("days: give either start and end, or one of them with days")
    length = timedelta(days=90 if days is None else days)
    try:
        if start is None:
            stop = to_utc_end(end, "end") if end is not None else _today()
            return Window(stop - length, stop)
        begin = to_utc(start, "start")
        return Window(begin, to_utc_end(end, "end") if end is not None else begin + length)
    except WindowError as error:
        raise ValueError(str(error)) from error


def _today() -> datetime:
    return datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC)


def _epoch_us(instant: datetime) -> int:
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _month(text: str) -> tuple[int, int]:
    try:
        year, month = (int(part) for part in str(text).split("-"))
        date(year, month, 1)
    except ValueError as error:
        raise ValueError(f"overconfident_months: {text!r} is not a YYYY-MM month") from error
    return year, month


def _service_names(services: int | Sequence[str] | None) -> list[str]:
    if services is None:
        return list(DEFAULT_SERVICES)
    if isinstance(services, int):
        if services < 1:
            raise ValueError(f"services: {services!r} must be at least 1")
        extra = [f"service-{i + 1}" for i in range(len(DEFAULT_SERVICES), services)]
        return list(DEFAULT_SERVICES[:services]) + extra
    names = [str(name).strip() for name in services]
    if not names or any(not name for name in names) or len(set(names)) != len(names):
        raise ValueError(f"services: {list(services)!r} must be distinct, non-empty names")
    return names


def _noisy(noisy_service: str | None, names: list[str]) -> str | None:
    if noisy_service is None:
        return None
    if noisy_service == "auto":
        return NOISY_SERVICE if NOISY_SERVICE in names else names[-1]
    if noisy_service not in names:
        raise ValueError(f"noisy_service: {noisy_service!r} is not one of the services {names}")
    return noisy_service


def _variants(cause: str) -> list[str]:
    """The spellings of one cause, in `_SPELLING_WEIGHTS` order."""
    return [cause, cause.title(), cause.upper(), "  " + cause.replace(" ", "  ") + " ", cause.capitalize()]


def _spellings(emerging: str | None) -> list[str]:
    causes = [*TRUE_POSITIVE_CAUSES, *FALSE_POSITIVE_CAUSES, *([emerging] if emerging else [])]
    return [spelling for cause in causes for spelling in _variants(cause)]


def _root_causes(
    rng: np.random.Generator,
    size: int,
    service: np.ndarray,
    true_positive: np.ndarray,
    day_idx: np.ndarray,
    day_list: list[date],
    emerging: str | None,
    emerging_from: Instant | None,
    emerging_share: float,
) -> np.ndarray:
    """Index into `_spellings(emerging)` per row: cause * 5 + spelling variant."""
    n_tp, n_fp = len(TRUE_POSITIVE_CAUSES), len(FALSE_POSITIVE_CAUSES)
    zipf = 1.0 / np.arange(1, n_tp + 1) ** 1.1
    # Each service leans on different causes: a shifted Zipf over the same list.
    tp_cause = (_draw(rng, zipf, size).astype(np.int32) + service * 5) % n_tp
    fp_cause = n_tp + _draw(rng, np.array([0.4, 0.3, 0.2, 0.1]), size).astype(np.int32)
    cause = np.where(true_positive, tp_cause, fp_cause)
    if emerging and day_list:
        if emerging_from is None:
            first_day = len(day_list) // 2
        else:
            first = to_utc(emerging_from, "emerging_from").date()
            first_day = int(np.searchsorted(np.array(day_list, dtype="datetime64[D]"), np.datetime64(first)))
        is_new = true_positive & (day_idx >= first_day) & (rng.random(size) < emerging_share)
        cause = np.where(is_new, n_tp + n_fp, cause)
    variant = _draw(rng, _SPELLING_WEIGHTS, size)
    return (cause * len(_SPELLING_WEIGHTS) + variant).astype(np.uint32)
