"""The Dagster code location of `workspace.yaml` and `dagster dev`: `build_defs` over the `OPX_*` settings."""

from opx_learning.app.event_log import enable_event_batches
from opx_learning.build import build_defs
from opx_learning.config import Settings

# Range runs hand their per-partition events to the event log in batches (opx_learning.app.event_log).
enable_event_batches()

defs = build_defs(Settings.from_env())
