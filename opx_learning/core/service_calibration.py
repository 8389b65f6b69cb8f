"""Per-service calibration with empirical-Bayes shrinkage, and where confidence is wrong (docs/calibration.md).

Per-service calibration: within each band, a service's accuracy is shrunk toward the
global band accuracy with a beta-binomial model whose Beta(α, β) prior is fitted per
band across services by the method of moments:

- μ = Σx / N, the global band accuracy (x true positives of n scored outcomes per service,
  N = Σn over the k services with outcomes in the band);
- S = Σ n (x/n − μ)², whose expectation under the model is
  μ(1 − μ)[(k − 1) + ρ (N − Σn²/N − (k − 1))], ρ = 1 / (α + β + 1) the between-service
  correlation; solving for ρ gives ρ̂ and the prior strength M = α + β = 1/ρ̂ − 1;
- α = Mμ, β = M(1 − μ); a service's posterior is Beta(x + α, n − x + β): `shrunk_accuracy`
  is its mean (x + Mμ) / (n + M), `shrunk_ci_low` / `shrunk_ci_high` its 2.5 % and 97.5 %
  quantiles (scipy.stats.beta.ppf).

Choices beyond docs/design.md (the `fit` column of `service_band_priors` says which applied):

- `moments`: M = 1/ρ̂ − 1 lies in [PRIOR_MIN_STRENGTH, N].
- `floor`: the fitted M is below PRIOR_MIN_STRENGTH (20 outcomes, the size of a sufficient
  band, docs/design.md#bands), or ρ̂ ≥ 1: M = 20. With few services the spread is dominated by
  the noise of the smallest one, and the moments would then trust 3 outcomes as much as 3,000;
  with the floor a service needs about 20 outcomes in a band before its own accuracy outweighs
  the band's.
- `pooled`: no between-service spread beyond binomial noise (ρ̂ ≤ 0, zero variance included),
  or none estimable with several services (every service has one outcome, or every outcome of
  the band has the same label): M = N, i.e. the prior counts as much as the band's outcomes
  together and each service reads close to the pooled band. M is also capped at N.
- `single service`: one service in the band has nothing to borrow from: M = 0, the posterior
  is Beta(x, n − x), its mean the raw accuracy.
- A posterior parameter that is 0 (every outcome it rests on has one label) makes the Beta
  degenerate: the interval is then the Jeffreys one, Beta with that parameter set to ½,
  with its end at 0 (or 1) where the posterior mass is.
- `severity` uses the calibration's severity thresholds (docs/design.md#bands) on the shrunk
  drift without the sufficiency gate: shrinkage is what makes a small service's estimate usable
  (its drift is mostly the band's). The advisory alert of the monthly asset still asks for
  ≥ 20 outcomes.

Where confidence is wrong: per (service, root cause normalised as in pattern extraction) with at
least MIN_ROOT_CAUSE_OUTCOMES (20, the sufficient-band size: below it an interval is too wide to
tell a real gap) scored outcomes, accuracy vs mean confidence, with the Wilson 95 % interval for
reading. A root cause whose outcomes are almost all of one class (at least DECIDED_SHARE = 95 %
false positives, or true positives, over every service) is *decided by the cause*: the platform
cannot tell it apart at detection time, so its gap is a property of the cause, not a monthly
finding; such rows are flagged `decided_by_cause` and never `significant`. Every other row gets
the two-sided exact binomial p-value of its true-positive count among n outcomes at its mean
predicted confidence (conservative: that binomial is at least as wide as the Poisson-binomial of
the individual confidences), and the Benjamini-Hochberg adjusted `q_value` over those rows;
`significant` when q ≤ FDR_Q (5 %). Ranked
significant first by q, then by |drift|; decided rows last. A null root cause is not listed.

Both functions read only the scored outcomes (a non-null `predicted_confidence`) of `[start, end)`;
an empty window raises `InsufficientData`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from scipy.stats import beta as beta_distribution
from scipy.stats import binom

from opx_learning.core.calibration import (
    InsufficientData,
    band_expr,
    severity,
    wilson_interval,
)
from opx_learning.core.patterns import root_cause_keys
from opx_learning.core.schema import BAND_MIN_SUFFICIENT, BAND_NAMES, outcome_frame
from opx_learning.core.validation import check_numeric_input
from opx_learning.core.windows import Instant, Window

PRIOR_MIN_STRENGTH = float(BAND_MIN_SUFFICIENT)
MIN_ROOT_CAUSE_OUTCOMES = BAND_MIN_SUFFICIENT
DECIDED_SHARE = 0.95
FDR_Q = 0.05
INTERVAL = (0.025, 0.975)

SERVICE_BANDS_SCHEMA: dict[str, pl.DataType] = {
    "service": pl.String(),
    "band": pl.String(),
    "n": pl.Int64(),
    "accuracy": pl.Float64(),
    "shrunk_accuracy": pl.Float64(),
    "shrunk_ci_low": pl.Float64(),
    "shrunk_ci_high": pl.Float64(),
    "mean_confidence": pl.Float64(),
    "drift": pl.Float64(),
    "severity": pl.String(),
}

PRIORS_SCHEMA: dict[str, pl.DataType] = {
    "band": pl.String(),
    "services": pl.Int64(),
    "n": pl.Int64(),
    "accuracy": pl.Float64(),
    "rho": pl.Float64(),
    "prior_strength": pl.Float64(),
    "alpha": pl.Float64(),
    "beta": pl.Float64(),
    "fit": pl.String(),
}

ROOT_CAUSE_SCHEMA: dict[str, pl.DataType] = {
    "service": pl.String(),
    "root_cause": pl.String(),
    "root_cause_key": pl.String(),
    "n": pl.Int64(),
    "true_positives": pl.Int64(),
    "accuracy": pl.Float64(),
    "mean_confidence": pl.Float64(),
    "drift": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "significant": pl.Boolean(),
    "direction": pl.String(),
    "severity": pl.String(),
    "finding": pl.String(),
    "p_value": pl.Float64(),
    "q_value": pl.Float64(),
    "decided_by_cause": pl.Boolean(),
}

class NoScoredOutcomes(InsufficientData):
    """No outcome with a predicted confidence in the window (an `InsufficientData`)."""

    def __init__(self, outcome_count: int, required: int, skipped_count: int = 0, window: Window | None = None):
        super().__init__(outcome_count, required, skipped_count, window)
        where = f" in [{window.start_iso}, {window.end_iso})" if window is not None else ""
        message = (
            f"no outcome with a predicted_confidence{where} ({skipped_count} skipped without one); "
            "check the window and that the outcomes carry predicted_confidence"
        )
        self.args = (message,)


def calibrate_by_service(
    outcomes: pl.DataFrame | pl.LazyFrame,
    start: Instant,
    end: Instant,
    min_prior_strength: float = PRIOR_MIN_STRENGTH,
) -> pl.DataFrame:
    """Calibrate each service's bands, shrinking its accuracy toward the global band accuracy.

    Args:
        outcomes: canonical outcomes (needs service, recorded_at, predicted_confidence, true_positive).
        start: window start (date, datetime or ISO-8601; naive = UTC).
        end: window end, exclusive (`...T23:59:59.999Z` means the end of that day).
        min_prior_strength: the fewest outcomes the band prior counts for (see the module docstring).

    Returns:
        One row per service and non-empty band (services ascending, bands in order), columns of
        `SERVICE_BANDS_SCHEMA`.

    Raises:
        InsufficientData: no outcome with a predicted confidence in the window.
        WindowError: start/end unreadable, out of bounds, or end <= start.
        TypeError, ValueError: bad `outcomes` (a missing or mistyped column, NaN or out-of-range
            confidences: named in the message) or a negative `min_prior_strength`.
    """
    rows, _ = service_bands_and_priors(outcomes, start, end, min_prior_strength)
    return rows


def service_band_priors(
    outcomes: pl.DataFrame | pl.LazyFrame,
    start: Instant,
    end: Instant,
    min_prior_strength: float = PRIOR_MIN_STRENGTH,
) -> pl.DataFrame:
    """The Beta prior fitted per band across services (what `calibrate_by_service` shrinks toward).

    Returns:
        One row per non-empty band, columns of `PRIORS_SCHEMA`: services and outcomes in the band,
        the global band accuracy, ρ̂ (null when not estimable), the prior strength α + β, α, β and
        which rule fixed the strength (`moments`, `floor`, `pooled`, `single service`).
    """
    _, priors = service_bands_and_priors(outcomes, start, end, min_prior_strength)
    return priors


def _scored(
    outcomes: pl.DataFrame | pl.LazyFrame, start: Instant, end: Instant, columns: tuple[str, ...]
) -> tuple[pl.DataFrame, Window]:
    """The window's outcomes with a predicted confidence (`columns` plus `confidence`); InsufficientData if none."""
    window = Window.parse(start, end)
    check_numeric_input(outcomes, window, ("predicted_confidence",))
    needed = ("recorded_at", "predicted_confidence", "true_positive", *columns)
    frame = outcome_frame(outcomes, needed)
    recorded, confidence = pl.col("recorded_at"), pl.col("predicted_confidence")
    current = frame.filter((recorded >= window.start) & (recorded < window.end))
    scored_q = current.filter(confidence.is_not_null()).select(
        *columns, confidence.cast(pl.Float64).alias("confidence"), "true_positive"
    )
    skipped_q = current.select(confidence.is_null().sum().cast(pl.Int64).alias("skipped"))
    scored, skipped = pl.collect_all([scored_q, skipped_q], engine="streaming")
    if scored.is_empty():
        raise NoScoredOutcomes(0, 1, int(skipped.item()), window)
    # One chunk in row order: the float sums then do not depend on how the source was chunked.
    return scored.rechunk(), window


def service_bands_and_priors(
    outcomes: pl.DataFrame | pl.LazyFrame,
    start: Instant,
    end: Instant,
    min_prior_strength: float = PRIOR_MIN_STRENGTH,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`calibrate_by_service` and `service_band_priors` of one window in one pass (the monthly asset uses both)."""
    if isinstance(min_prior_strength, bool) or not isinstance(min_prior_strength, int | float) or not (
        0 <= min_prior_strength < float("inf")
    ):
        raise ValueError(f"min_prior_strength: {min_prior_strength!r} must be a finite number >= 0")
    scored, _ = _scored(outcomes, start, end, ("service",))
    cells = (
        scored.group_by("service", band_expr(pl.col("confidence")).alias("index"))
        .agg(
            n=pl.len().cast(pl.Int64),
            x=pl.col("true_positive").sum().cast(pl.Int64),
            confidence_sum=pl.col("confidence").sum(),
        )
        .sort("index", "service")
    )
    priors = _fit_priors(cells, float(min_prior_strength))
    joined = cells.join(priors.select("index", "mu", "M"), on="index", how="left")
    n = joined["n"].to_numpy().astype(np.float64)
    x = joined["x"].to_numpy().astype(np.float64)
    mu = joined["mu"].to_numpy()
    strength = joined["M"].to_numpy()
    a = x + strength * mu
    b = (n - x) + strength * (1.0 - mu)
    low, high = _beta_interval(a, b)
    rows = (
        joined.with_columns(
            band=pl.col("index").replace_strict(list(range(len(BAND_NAMES))), list(BAND_NAMES), return_dtype=pl.String),
            accuracy=pl.col("x") / pl.col("n"),
            shrunk_accuracy=pl.Series(a / (a + b)),
            shrunk_ci_low=pl.Series(low),
            shrunk_ci_high=pl.Series(high),
            mean_confidence=pl.col("confidence_sum") / pl.col("n"),
        )
        .with_columns(drift=pl.col("shrunk_accuracy") - pl.col("mean_confidence"))
        .sort("service", "index")
    )
    # One severity() call per service and band (not per outcome): the calibration's severity rule in one place.
    severities = [severity(drift, True) for drift in rows["drift"].to_list()]
    rows = rows.with_columns(severity=pl.Series(severities, dtype=pl.String)).select(list(SERVICE_BANDS_SCHEMA))
    return rows.cast(SERVICE_BANDS_SCHEMA), _priors_table(priors)  # type: ignore[arg-type]


def _fit_priors(cells: pl.DataFrame, floor: float) -> pl.DataFrame:
    """Method-of-moments Beta prior per band across services (see the module docstring for the rules)."""
    totals = (
        cells.group_by("index")
        .agg(
            k=pl.len().cast(pl.Int64),
            N=pl.col("n").sum(),
            X=pl.col("x").sum(),
            sum_n2=(pl.col("n").cast(pl.Float64) ** 2).sum(),
        )
        .with_columns(mu=pl.col("X") / pl.col("N"))
    )
    # S = Σ n (x/n − μ)² of each band.
    spread = (
        cells.join(totals.select("index", "mu"), on="index")
        .group_by("index")
        .agg(S=(pl.col("n") * (pl.col("x") / pl.col("n") - pl.col("mu")) ** 2).sum())
    )
    per_band = totals.join(spread, on="index").sort("index")
    k = per_band["k"].to_numpy().astype(np.float64)
    total = per_band["N"].to_numpy().astype(np.float64)
    mu = per_band["mu"].to_numpy()
    s = per_band["S"].to_numpy()
    denominator = total - per_band["sum_n2"].to_numpy() / total - (k - 1.0)
    variance = mu * (1.0 - mu)
    estimable = (k >= 2) & (denominator > 0) & (variance > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(estimable, (s / np.where(variance > 0, variance, 1.0) - (k - 1.0)) / denominator, np.nan)
        fitted = np.where(rho > 0, 1.0 / rho - 1.0, np.inf)
    floor_here = np.minimum(floor, total)
    strength = np.clip(fitted, floor_here, total)
    fit = np.where(
        k < 2,
        "single service",
        np.where(
            ~estimable | (rho <= 0) | (fitted >= total),
            "pooled",
            np.where(fitted < floor_here, "floor", "moments"),
        ),
    )
    strength = np.where(k < 2, 0.0, np.where(~estimable | (rho <= 0), total, strength))
    return per_band.with_columns(
        rho=pl.Series(np.where(estimable, rho, np.nan)).fill_nan(None),
        M=pl.Series(strength),
        fit=pl.Series(fit, dtype=pl.String),
    )


def _priors_table(priors: pl.DataFrame) -> pl.DataFrame:
    return priors.select(
        band=pl.col("index").replace_strict(list(range(len(BAND_NAMES))), list(BAND_NAMES), return_dtype=pl.String),
        services=pl.col("k"),
        n=pl.col("N"),
        accuracy=pl.col("mu"),
        rho=pl.col("rho"),
        prior_strength=pl.col("M"),
        alpha=pl.col("M") * pl.col("mu"),
        beta=pl.col("M") * (1.0 - pl.col("mu")),
        fit=pl.col("fit"),
    ).cast(PRIORS_SCHEMA)  # type: ignore[arg-type]


def _gap_p_values(true_positives: np.ndarray, n: np.ndarray, mean_confidence: np.ndarray) -> np.ndarray:
    """Two-sided exact binomial p-values of true-positive counts against n draws at the mean predicted confidence.

    Binomial(n, mean confidence) has at least the variance of the Poisson-binomial of the
    individual confidences, so the test is conservative (it never over-reports a gap).
    """
    p = np.clip(mean_confidence, 0.0, 1.0)
    lower = binom.cdf(true_positives, n, p)
    upper = binom.sf(true_positives - 1, n, p)
    return np.minimum(1.0, 2 * np.minimum(lower, upper))


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input's order."""
    count = len(p_values)
    if count == 0:
        return np.array([], dtype=float)
    order = np.argsort(p_values)
    scaled = p_values[order] * count / np.arange(1, count + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1].clip(max=1.0)
    result = np.empty(count)
    result[order] = adjusted
    return result


def _finding(row: dict[str, Any]) -> str:
    cause, service = row["root_cause"], row["service"]
    if row["decided_by_cause"]:
        label = "false positives" if row["accuracy"] <= 0.5 else "true positives"
        share = 1 - row["accuracy"] if row["accuracy"] <= 0.5 else row["accuracy"]
        return (f"root cause {cause} is {share:.0%} {label} (service {service}): decided by the cause, "
                "the platform cannot tell it apart at detection time")
    state = row["direction"] if row["significant"] else "no significant gap"
    return f"{state} on root cause {cause} in service {service} (accuracy {row['accuracy']:.2f} vs confidence {row['mean_confidence']:.2f})"


def _beta_interval(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed 95 % interval of Beta(a, b); a zero parameter falls back to the Jeffreys convention."""
    low = beta_distribution.ppf(INTERVAL[0], np.where(a > 0, a, 0.5), np.where(b > 0, b, 0.5))
    high = beta_distribution.ppf(INTERVAL[1], np.where(a > 0, a, 0.5), np.where(b > 0, b, 0.5))
    return np.where(a > 0, low, 0.0), np.where(b > 0, high, 1.0)


def confidence_by_root_cause(
    outcomes: pl.DataFrame | pl.LazyFrame,
    start: Instant,
    end: Instant,
    min_outcomes: int = MIN_ROOT_CAUSE_OUTCOMES,
) -> pl.DataFrame:
    """Accuracy vs mean predicted confidence per (service, normalised root cause), ranked by significant drift.

    Args:
        outcomes: canonical outcomes (needs service, root_cause, recorded_at, predicted_confidence,
            true_positive).
        start: window start (date, datetime or ISO-8601; naive = UTC).
        end: window end, exclusive.
        min_outcomes: fewest scored outcomes a (service, root cause) needs to be listed.

    Returns:
        Columns of `ROOT_CAUSE_SCHEMA`, one row per (service, root cause) with at least
        `min_outcomes` scored outcomes: significant rows (mean confidence outside the Wilson
        interval) first, then by |drift| descending, service and root cause. `root_cause` is the
        normalised cause (its one label everywhere), `finding` reads e.g. "overconfident on root cause disk full in
        service api (accuracy 0.40 vs confidence 0.85)".

    Raises:
        InsufficientData: no outcome with a predicted confidence in the window.
        WindowError, TypeError, ValueError: as `calibrate_by_service`, or a bad `min_outcomes`.
    """
    if isinstance(min_outcomes, bool) or not isinstance(min_outcomes, int) or min_outcomes < 1:
        raise ValueError(f"min_outcomes: {min_outcomes!r} must be a whole number >= 1")
    scored, _ = _scored(outcomes, start, end, ("service", "root_cause"))
    named = scored.filter(pl.col("root_cause").is_not_null())
    keys = root_cause_keys(named["root_cause"]).rename({"key": "root_cause_key"})
    named = named.join(keys, on="root_cause", how="left", maintain_order="left")
    # A cause decided by itself: (almost) one class over every service of the window.
    decided = (
        named.group_by("root_cause_key")
        .agg(share=pl.col("true_positive").mean(), total=pl.len())
        .filter((pl.col("total") >= min_outcomes) & ((pl.col("share") >= DECIDED_SHARE) | (pl.col("share") <= 1 - DECIDED_SHARE)))
        .select("root_cause_key", decided_by_cause=pl.lit(True))
    )
    groups = (
        named.group_by("service", "root_cause_key")
        .agg(
            n=pl.len().cast(pl.Int64),
            true_positives=pl.col("true_positive").sum().cast(pl.Int64),
            confidence_sum=pl.col("confidence").sum(),
        )
        # The label is the normalised cause itself, as in pattern extraction: one label per cause.
        .with_columns(root_cause=pl.col("root_cause_key"))
        .filter(pl.col("n") >= min_outcomes)
        .join(decided, on="root_cause_key", how="left")
        .with_columns(
            decided_by_cause=pl.col("decided_by_cause").fill_null(False),
            accuracy=pl.col("true_positives") / pl.col("n"),
            mean_confidence=pl.col("confidence_sum") / pl.col("n"),
        )
        .with_columns(drift=pl.col("accuracy") - pl.col("mean_confidence"))
    )
    # One Wilson interval per listed group (groups, not outcomes).
    intervals = [wilson_interval(tp, n) for tp, n in zip(groups["true_positives"], groups["n"], strict=True)]
    p_values = _gap_p_values(groups["true_positives"].to_numpy(), groups["n"].to_numpy(),
                             groups["mean_confidence"].to_numpy())
    tested = ~groups["decided_by_cause"].to_numpy()
    q_values = np.full(len(p_values), np.nan)
    q_values[tested] = benjamini_hochberg(p_values[tested])
    groups = groups.with_columns(
        ci_low=pl.Series([low for low, _ in intervals], dtype=pl.Float64),
        ci_high=pl.Series([high for _, high in intervals], dtype=pl.Float64),
        p_value=pl.Series(p_values, dtype=pl.Float64),
        q_value=pl.Series(q_values, dtype=pl.Float64, nan_to_null=True),
    )
    significant = ~pl.col("decided_by_cause") & (pl.col("q_value") <= FDR_Q)
    direction = (
        pl.when(pl.col("decided_by_cause"))
        .then(pl.lit("decided by cause"))
        .when(~significant)
        .then(pl.lit("within interval"))
        .when(pl.col("drift") < 0)
        .then(pl.lit("overconfident"))
        .otherwise(pl.lit("underconfident"))
    )
    groups = groups.with_columns(significant=significant, direction=direction, size=pl.col("drift").abs())
    groups = groups.sort(
        "decided_by_cause", "significant", "q_value", "size", "service", "root_cause_key",
        descending=[False, True, False, True, False, False], nulls_last=True,
    )
    severities = [
        "INFO" if decided else severity(d, n >= BAND_MIN_SUFFICIENT)
        for d, n, decided in zip(groups["drift"], groups["n"], groups["decided_by_cause"], strict=True)
    ]
    findings = [_finding(row) for row in groups.iter_rows(named=True)]
    return groups.with_columns(
        severity=pl.Series(severities, dtype=pl.String), finding=pl.Series(findings, dtype=pl.String)
    ).select(list(ROOT_CAUSE_SCHEMA)).cast(ROOT_CAUSE_SCHEMA)  # type: ignore[arg-type]
