"""The composition root: `Settings` in, the whole Dagster code location out.

This is the one place where the backend is chosen: the resources of a location are the
local or the aws classes, configured with the settings' values. Everything below receives
what it needs from here. `key_prefix` prefixes every asset key, check, job, schedule,
sensor and resource key the location defines, and its assets use their own IO manager
key, so the location merges with a team's own definitions, and two locations with two
homes run side by side (docs/embedding.md).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from opx_learning.config import ConfigurationError, Settings
from opx_learning.defs import checks, integrity, monitors
from opx_learning.defs.alert_sensors import build_alert_sensors
from opx_learning.defs.assets import build_assets
from opx_learning.defs.automation import build_automation_sensor, with_automation
from opx_learning.defs.jobs import build_jobs
from opx_learning.defs.location import IO_MANAGER, Location
from opx_learning.defs.outcome_days import (
    build_observation_schedule,
    build_outcome_days,
)
from opx_learning.defs.schedules import build_schedules
from opx_learning.defs.sensors import build_sensors
from opx_learning.defs.service_calibration import build_service_calibration
from opx_learning.resources import alerts, safety, stores
from opx_learning.resources.io_managers import AssetStorage, PolarsParquetIOManager


def _local(settings: Settings) -> dict[str, Any]:
    storage = AssetStorage(base_uri=settings.assets_base, home=str(settings.home))
    return {
        "safety": safety.LocalSafetyResource.from_settings(settings),
        "alerts": alerts.LocalAlertsResource.from_settings(settings),
        "outcome_store": stores.LocalOutcomeStoreResource.from_settings(settings),
        "snapshot_store": stores.LocalSnapshotStoreResource.from_settings(settings),
        "asset_storage": storage,
    }


def _aws(settings: Settings) -> dict[str, Any]:
    # dagster-aws (the `aws` extra) is needed by the aws backend only.
    try:
        from opx_learning.resources import aws
    except ModuleNotFoundError as missing:
        raise ConfigurationError(
            f"backend (OPX_BACKEND): 'aws' needs dagster-aws ({missing.name} is not installed); "
            'pip install "opx_learning[aws]"'
        ) from None

    s3 = aws.s3_resource(settings)
    storage = aws.AwsAssetStorage.from_settings(settings, base_uri=settings.assets_base, s3=s3)
    return {
        "safety": safety.AwsSafetyResource.from_settings(settings),
        "alerts": alerts.AwsAlertsResource.from_settings(settings),
        "outcome_store": aws.AwsOutcomeStoreResource.from_settings(settings, s3=s3),
        "snapshot_store": aws.AwsSnapshotStoreResource.from_settings(settings, s3=s3),
        "asset_storage": storage,
    }


_BY_BACKEND = {"local": _local, "aws": _aws}


def build_resources(settings: Settings, key_prefix: str | None = None) -> dict[str, Any]:
    """The configured resources of a location, by (prefixed) resource key.

    Args:
        settings: the configuration.
        key_prefix: the location's key prefix, if any.

    Returns:
        `safety`, `alerts`, `outcome_store`, `snapshot_store`, `asset_storage` and `opx_io_manager`
        (each `<prefix>_...` with a prefix).
    """
    names = Location.build(settings, key_prefix).names
    chosen = _BY_BACKEND[settings.backend](settings)
    return {
        **{names(role): resource for role, resource in chosen.items()},
        names(IO_MANAGER): PolarsParquetIOManager(storage=chosen["asset_storage"]),
    }


def build_defs(settings: Settings | None = None, *, key_prefix: str | None = None) -> dg.Definitions:
    """The whole opx_learning code location for `settings`.

    Args:
        settings: the configuration (default: `Settings()`, the local backend in `~/.opx`).
        key_prefix: prefix of every asset key, check, job, schedule, sensor and resource key.

    Returns:
        Assets (with `outcome_days`, the observed store), checks, jobs, schedules (STOPPED), sensors (the
        late-outcomes automation STOPPED) and their configured resources.
    """
    loc = Location.build(settings or Settings(), key_prefix)
    assets = build_assets(loc)
    assets.append(build_service_calibration(loc, assets[0]))
    assets = with_automation(loc, assets)
    outcome_days, observation_job = build_outcome_days(loc)
    jobs = build_jobs(loc, assets)
    defs = dg.Definitions(
        assets=[outcome_days, *assets],
        jobs=[*jobs.values(), observation_job],
        schedules=[*build_schedules(loc, jobs), build_observation_schedule(loc, observation_job)],
        sensors=[*build_sensors(loc), *build_alert_sensors(loc), build_automation_sensor(loc)],
        resources=build_resources(loc.settings, key_prefix),
        # Steps of one run share a process: a run of these small assets is ~1 s instead of ~5 s.
        executor=dg.in_process_executor,
    )
    defs = dg.Definitions.merge(
        defs, checks.build_checklist(loc), integrity.build_integrity(loc), monitors.build_monitors(loc)
    )
    # Every sensor and schedule tick leaves a heartbeat (docs/monitoring.md).
    return monitors.with_heartbeats(defs)
