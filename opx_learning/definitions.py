"""The Dagster code location of `workspace.yaml` and `dagster dev`: `build_defs` over the `OPX_*` settings."""

from opx_learning.build import build_defs
from opx_learning.config import Settings

defs = build_defs(Settings.from_env())
