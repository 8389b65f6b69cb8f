"""The outcomes every learning asset reads: the `daily_outcomes` input stage and the window reads over it.

`daily_outcomes` validates each UTC day of the outcome store and stores the valid rows
(the rejected ones beside them, `rejected_outcomes`); it is a read-only input stage, not a
learning operation, so it is not audited. Every asset reads a window's outcomes per UTC
day (`scan_window_outcomes`): the materialized `daily_outcomes` partition when it exists,
else the outcome store validated on the fly (so a weekly run at Sunday 00:00 does not
wait for Saturday's daily run, and a manual calibration works on a fresh store).
"""

import itertools
from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from opx_learning.core.schema import OUTCOME_SCHEMA, empty_outcomes
from opx_learning.core.validation import validate_outcomes, validate_outcomes_by
from opx_learning.core.windows import Window, day_window
from opx_learning.defs import beta
from opx_learning.defs.location import Location
from opx_learning.defs.operations import Produced, run_operation
from opx_learning.defs.outcome_days import OUTCOME_DAYS
from opx_learning.defs.partitions import to_window
from opx_learning.defs.shared import (
    FRESHNESS,
    SINGLE_RUN,
    asset_options,
    range_parameters,
)
from opx_learning.resources.io_managers import AssetStorage
from opx_learning.resources.stores import OutcomeStoreResource

REJECTED_OUTCOMES = "rejected_outcomes"

# The UTC day of an outcome as a daily partition key, while a range of days is validated at once.
DAY = "__day"


def scan_window_outcomes(storage: AssetStorage, store: OutcomeStoreResource, window: Window) -> pl.LazyFrame:
    """Valid outcomes of `window`, lazily: materialized `daily_outcomes` per day, else the store validated.

    The materialized days are scanned, not read: a query reads only the columns it uses.
    Days come in order (each day's rows as stored, sorted by `recorded_at`).
    """
    days = [day.isoformat() for day in window.days()]
    stored = storage.parquet_sources("daily_outcomes", days)
    parts: list[pl.LazyFrame] = []
    outcome_store = None
    # Consecutive stored days are one scan; consecutive missing days one store read and one validation.
    for is_stored, group in itertools.groupby(days, key=lambda day: day in stored):
        keys = list(group)
        if is_stored:
            scan = pl.scan_parquet([stored[key] for key in keys], hive_partitioning=False)
            parts.append(scan.select([pl.col(c).cast(OUTCOME_SCHEMA[c]) for c in OUTCOME_SCHEMA]))
        else:
            outcome_store = outcome_store or store.store()
            span = Window(day_window(date.fromisoformat(keys[0])).start, day_window(date.fromisoformat(keys[-1])).end)
            valid = validate_outcomes(outcome_store.read(span)).valid
            parts.append(valid.sort("recorded_at", maintain_order=True).lazy())
    frame = pl.concat(parts, how="vertical") if parts else empty_outcomes().lazy()
    recorded = pl.col("recorded_at")
    return frame.filter((recorded >= window.start) & (recorded < window.end))


def read_outcomes(storage: AssetStorage, store: OutcomeStoreResource, window: Window) -> pl.DataFrame:
    """Valid outcomes of `window` as a DataFrame (`scan_window_outcomes` collected)."""
    return scan_window_outcomes(storage, store, window).collect()


def _daily_outcomes(context: dg.AssetExecutionContext, r: Any) -> Iterator[Any]:
    def work() -> Produced:
        # One read and one vectorised validation for the whole range, each day validated as if alone.
        days = r.outcome_store.store().read(to_window(context.partition_time_window))
        by_day = validate_outcomes_by(days.with_columns(pl.col("recorded_at").dt.strftime("%Y-%m-%d").alias(DAY)), DAY)
        nothing = validate_outcomes(days.clear())
        values, metadata = {}, {}
        for key in context.partition_keys:
            result = by_day.get(key, nothing)
            values[key] = result.valid
            meta: dict[str, Any] = {
                "outcomes": result.valid.height,
                "rejected": result.rejected.height,
                "services": result.valid["service"].n_unique(),
            }
            if result.rejected.height:
                uri = r.asset_storage.write(REJECTED_OUTCOMES, key, result.rejected)
                meta["rejected_uri"] = dg.MetadataValue.path(uri)
                meta["rejected_by_field"] = dg.MetadataValue.json(result.counts())
            metadata[key] = meta
        total = sum(m["outcomes"] for m in metadata.values())
        rejected = sum(m["rejected"] for m in metadata.values())
        return Produced(values, metadata, {"outcomes": total, "rejected": rejected})

    # Read-only input stage, not a learning operation: not audited; the operations downstream are.
    parameters = range_parameters(context, "DAILY")
    # An automation run the guard blocks holds it back, audited as the run's pattern extraction.
    holds = (dg.AssetKey([*context.asset_key.path[:-1], "pattern_summaries_daily"]), "PATTERN_EXTRACTION")
    yield from run_operation(context, None, r.asset_storage, "OUTCOME_VALIDATION", parameters, work,
                             screen=r.safety, holds=holds)


def build_outcomes(loc: Location) -> dg.AssetsDefinition:
    """The `daily_outcomes` asset of one location."""
    p, n = loc.partitions, loc.names

    @beta.asset(
        name="daily_outcomes",
        partitions_def=p.daily,
        backfill_policy=SINGLE_RUN,
        # The store's day (its data version): a late outcome into a computed day makes it unsynced.
        deps=[n.key(OUTCOME_DAYS)],
        freshness_policy=FRESHNESS["daily_outcomes"],
        required_resource_keys=n.required("outcome_store", "asset_storage", "safety"),
        group_name="outcomes",
        kinds={"polars", "parquet"},
        **asset_options(n),
    )
    def daily_outcomes(context: dg.AssetExecutionContext) -> Iterator[Any]:
        """Validated outcomes of each UTC day from the outcome store; rejected rows kept beside them."""
        yield from _daily_outcomes(context, n.resources(context))

    return daily_outcomes
