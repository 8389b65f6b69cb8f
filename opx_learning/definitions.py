"""The Dagster code location: composes assets, checks, schedules, sensors, jobs and resources."""

import dagster as dg

from opx_learning.defs import checks, integrity, monitors
from opx_learning.defs.alert_sensors import ALERT_SENSORS
from opx_learning.defs.assets import ASSETS
from opx_learning.defs.jobs import JOBS
from opx_learning.defs.schedules import SCHEDULES
from opx_learning.defs.sensors import SENSORS
from opx_learning.defs.service_calibration import SERVICE_CALIBRATION_ASSETS
from opx_learning.resources.alerts import AlertsResource
from opx_learning.resources.io_managers import AssetStorage, PolarsParquetIOManager
from opx_learning.resources.safety import SafetyResource
from opx_learning.resources.stores import OutcomeStoreResource, SnapshotStoreResource

_storage = AssetStorage()

defs = dg.Definitions(
    assets=[*ASSETS, *SERVICE_CALIBRATION_ASSETS],
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=[*SENSORS, *ALERT_SENSORS],
    resources={
        "io_manager": PolarsParquetIOManager(storage=_storage),
        "asset_storage": _storage,
        "outcome_store": OutcomeStoreResource(),
        "snapshot_store": SnapshotStoreResource(),
        "safety": SafetyResource(),
        "alerts": AlertsResource(),
    },
    # Steps of one run share a process: a run of these small assets is ~1 s instead of ~5 s.
    executor=dg.in_process_executor,
)
defs = dg.Definitions.merge(defs, checks.CHECKLIST_DEFS, integrity.INTEGRITY_DEFS, monitors.MONITOR_DEFS)
# Every sensor and schedule tick leaves a heartbeat (SPEC §9, opx_learning.defs.monitors).
defs = monitors.with_heartbeats(defs)
