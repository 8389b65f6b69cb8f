"""The daily integrity sweep as a morning-checklist item (P0 "data corruption detected", docs/integrity.md).

`stored_data` stands for what the learning operations stored (snapshots, outcome and
asset partitions, audit records); nothing materializes it. The checklist item of the
same name (`opx_learning.core.checklist`) runs the sweep in the `morning_checklist_job`
of the 09:00 UTC schedule (and `opx-learning checklist` / the demo); this check is the
same sweep when executed alone from the UI, never inside a learning run. The check sweeps
the 35 days before the checklist time (the `opx/checklist_at` tag, else now) with the
same module as `opx-learning verify`, raises one P0 `DATA_CORRUPTION` alert listing
the findings, and fails (ERROR) with them; the damaged items are left as evidence.
"""

from datetime import UTC, datetime

import dagster as dg

from opx_learning.core.windows import to_utc
from opx_learning.defs.checks import CHECKLIST_AT_TAG
from opx_learning.defs.location import Location
from opx_learning.integrity.sweep import DEFAULT_DAYS, default_window, run_sweep
from opx_learning.resources.alerts import AlertsResource

_LISTED = 20

def build_integrity(loc: Location) -> dg.Definitions:
    """The `stored_data` asset of one location and its daily integrity check."""
    stored_data = dg.AssetSpec(
        loc.names.key("stored_data"),
        group_name="integrity",
        kinds={"parquet", "json", "sqlite"},
        description="What the learning operations stored: snapshots, outcome and asset partitions, audit records "
        "(verified daily by the integrity sweep; `opx-learning verify` runs the same sweep).",
    )

    @dg.asset_check(
        asset=stored_data.key,
        name="stored_data_integrity",
        required_resource_keys=loc.names.required("alerts"),
        description=f"Snapshots, outcome and asset partitions and audit records of the last {DEFAULT_DAYS} days "
        "re-read intact (P0 DATA_CORRUPTION otherwise).",
    )
    def stored_data_integrity(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        """Sweep the window before the checklist time; FAIL with the findings and one P0 alert when anything is damaged."""
        return _integrity(context, loc.names.resources(context).alerts)

    return dg.Definitions(assets=[stored_data], asset_checks=[stored_data_integrity])


def _integrity(context: dg.AssetCheckExecutionContext, alerts: AlertsResource) -> dg.AssetCheckResult:
    at = context.run.tags.get(CHECKLIST_AT_TAG)
    window = default_window(DEFAULT_DAYS, to_utc(at, CHECKLIST_AT_TAG) if at else datetime.now(UTC))
    report = run_sweep(window, alerts.settings(), source="daily sweep", publisher=alerts.publisher())
    metadata: dict[str, object] = {
        "window": f"{window.start_iso}..{window.end_iso}",
        "backend": report.backend,
        **{f"checked_{name}": count for name, count in report.checked.items()},
        "findings": len(report.findings),
    }
    # The chain heads read, kept in the Dagster instance: a second copy outside the store they protect.
    if "chain heads" in report.locations:
        metadata["chain_heads"] = report.locations["chain heads"]
    if report.clean:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.ERROR,
                                   description=report.summary(), metadata=metadata)
    listed = "\n".join(f"- {finding}" for finding in report.findings[:_LISTED])
    more = len(report.findings) - _LISTED
    metadata["alert_dedup_id"] = str(report.alert_dedup_id)
    metadata["alerts_raised"] = len(report.alerts)
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"DATA_CORRUPTION: {report.summary()}\n{listed}" + (f"\n- ... and {more} more" if more > 0 else ""),
        metadata=metadata,
    )

