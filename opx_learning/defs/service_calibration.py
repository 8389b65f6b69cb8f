"""The monthly per-service calibration (docs/calibration.md): each service's bands shrunk toward the global band.

`confidence_calibration_by_service` is a derived analysis of the month, like
`drift_metrics`: it learns nothing the platform acts on and changes nothing, so it is not
a guarded, audited learning operation (the kill switch does not stop it; the month's
`confidence_calibration` is the audited CALIBRATION). It reads the month's validated
outcomes (`daily_outcomes`, else the outcome store) and stores one Parquet frame per month
(`opx.calibrate_by_service`); a month without scored outcomes stores an empty frame.

After the month is stored, a P3 advisory DRIFT alert (action ADVISORY_ONLY) is published
for each service with a band of at least 20 outcomes whose shrunk drift exceeds 0.15, its
drifted bands in the details; the deduplication key is the month and service, so
re-materializing a month never pages twice for the same service.
"""


from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dagster as dg
import polars as pl

from opx_learning.alerts.models import DRIFT, Alert
from opx_learning.alerts.rules import DRIFT_LIMIT
from opx_learning.core.calibration import InsufficientData
from opx_learning.core.schema import BAND_MIN_SUFFICIENT
from opx_learning.core.service_calibration import (
    PRIORS_SCHEMA,
    SERVICE_BANDS_SCHEMA,
    service_bands_and_priors,
)
from opx_learning.defs import beta
from opx_learning.defs.calibration_views import (
    miscalibrated_services_markdown,
    priors_markdown,
)
from opx_learning.defs.location import IO_MANAGER, Location
from opx_learning.defs.operations import Produced, run_operation
from opx_learning.defs.outcomes import read_outcomes
from opx_learning.defs.partitions import partition_window, to_window
from opx_learning.defs.shared import PER_PARTITION
from opx_learning.resources.alerts import AlertsResource
from opx_learning.resources.io_managers import AssetStorage
from opx_learning.resources.stores import OutcomeStoreResource

ASSET_NAME = "confidence_calibration_by_service"
ADVISORY_MIN_OUTCOMES = BAND_MIN_SUFFICIENT


def advisories(rows: pl.DataFrame, month: str, run_id: str | None = None) -> list[Alert]:
    """One P3 advisory DRIFT alert per service with a band of >= 20 outcomes and |shrunk drift| > 0.15."""
    drifted = rows.filter(
        (pl.col("n") >= ADVISORY_MIN_OUTCOMES) & (pl.col("drift").abs().round(9) > DRIFT_LIMIT)
    ).sort("service", "band")
    alerts = []
    for (service,), bands in drifted.group_by("service", maintain_order=True):
        details = {
            "scope": "service",
            "service": service,
            "month": month[:7],
            "bands": [
                {key: band[key] for key in ("band", "n", "accuracy", "shrunk_accuracy", "mean_confidence", "drift")}
                for band in bands.iter_rows(named=True)
            ],
            "threshold": DRIFT_LIMIT,
            "min_outcomes": ADVISORY_MIN_OUTCOMES,
            "note": "advisory only: review this service's bands; nothing is changed automatically",
        }
        alerts.append(
            Alert(DRIFT, "P3", "CALIBRATION", details, run_id=run_id, key=f"service-drift:{month}:{service}")
        )
    return alerts


def build_service_calibration(loc: Location, daily_outcomes: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The monthly by-service calibration asset of one location."""
    monthly = loc.partitions.monthly

    @beta.asset(
        name=ASSET_NAME,
        key_prefix=loc.names.key_prefix,
        io_manager_key=loc.names(IO_MANAGER),
        partitions_def=monthly,
        backfill_policy=PER_PARTITION,
        deps=[daily_outcomes],
        # Runs with the month's calibration (monthly_calibration_job, 1st 00:00 UTC): due by 00:12.
        freshness_policy=dg.FreshnessPolicy.cron(deadline_cron="12 0 1 * *", lower_bound_delta=timedelta(minutes=12)),
        output_required=False,
        required_resource_keys=loc.names.required("outcome_store", "asset_storage", "alerts"),
        group_name="calibration",
        kinds={"polars", "parquet"},
    )
    def confidence_calibration_by_service(context: dg.AssetExecutionContext) -> Iterator[Any]:
        """Each service's calibration by band for the month, shrunk toward the global band (empirical Bayes)."""
        r = loc.names.resources(context)
        yield from _by_service(context, r.outcome_store, r.asset_storage, r.alerts, monthly)

    return confidence_calibration_by_service


def _by_service(
    context: dg.AssetExecutionContext,
    outcome_store: OutcomeStoreResource,
    asset_storage: AssetStorage,
    alerts: AlertsResource,
    monthly: dg.TimeWindowPartitionsDefinition,
) -> Iterator[Any]:
    produced: dict[str, pl.DataFrame] = {}

    def work() -> Produced:
        metadata = {}
        for key in context.partition_keys:
            window = partition_window(monthly, key)
            outcomes = read_outcomes(asset_storage, outcome_store, window)
            try:
                rows, priors = service_bands_and_priors(outcomes, window.start, window.end)
            except InsufficientData:
                rows, priors = pl.DataFrame(schema=SERVICE_BANDS_SCHEMA), pl.DataFrame(schema=PRIORS_SCHEMA)
            produced[key] = rows
            metadata[key] = _metadata(rows, priors, advisories(rows, key))
        results = {"service_bands": sum(frame.height for frame in produced.values())}
        return Produced(dict(produced), metadata, results)

    span = to_window(context.partition_time_window)
    parameters = {"start_date": span.start_iso, "end_date": span.end_iso, "time_window": "MONTHLY"}
    yield from run_operation(context, None, asset_storage, "CALIBRATION", parameters, work)
    # Only once every month is stored: the advisories of what was stored.
    publisher = alerts.publisher()
    for key, rows in produced.items():
        for alert in advisories(rows, key, context.run.run_id):
            publisher.publish(alert)


def _metadata(rows: pl.DataFrame, priors: pl.DataFrame, alerts: list[Alert]) -> dict[str, Any]:
    if rows.is_empty():
        return {
            "services": 0,
            "scored_outcomes": 0,
            "advisories": 0,
            "miscalibrated_services": dg.MetadataValue.md("No outcomes with a predicted confidence in the month."),
        }
    return {
        "services": rows["service"].n_unique(),
        "scored_outcomes": int(rows["n"].sum()),
        "service_bands": rows.height,
        "critical_service_bands": int((rows["severity"] == "CRITICAL").sum()),
        "advisories": len(alerts),
        "advisory_services": ", ".join(alert.details["service"] for alert in alerts) or "-",
        "miscalibrated_services": dg.MetadataValue.md(miscalibrated_services_markdown(rows)),
        "band_priors": dg.MetadataValue.md(priors_markdown(priors)),
    }

