"""opx_learning: learning operations for an incident-response platform.

The analyst API (`import opx_learning as opx`) needs no Dagster instance; its
names are imported on first use so `import opx_learning` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API: dict[str, str] = {
    "Settings": "opx_learning.config",
    "ConfigurationError": "opx_learning.config",
    "build_defs": "opx_learning.build",
    "OpxLearningComponent": "opx_learning.component",
    "validate_outcomes": "opx_learning.core.validation",
    "ValidationResult": "opx_learning.core.validation",
    "load_outcomes": "opx_learning.stores.outcomes",
    "scan_outcomes": "opx_learning.stores.outcomes",
    "extract_patterns": "opx_learning.core.patterns",
    "calibrate": "opx_learning.core.calibration",
    "Calibration": "opx_learning.core.calibration",
    "InsufficientData": "opx_learning.core.calibration",
    "drift_metrics": "opx_learning.core.calibration",
    "calibrate_by_service": "opx_learning.core.service_calibration",
    "service_band_priors": "opx_learning.core.service_calibration",
    "confidence_by_root_cause": "opx_learning.core.service_calibration",
    "plot_drift": "opx_learning.plots",
    "plot_reliability": "opx_learning.plots",
    "build_snapshot": "opx_learning.core.snapshots",
    "diff_snapshots": "opx_learning.core.snapshot_diff",
    "Snapshot": "opx_learning.core.snapshots",
    "generate_outcomes": "opx_learning.core.synthetic",
    "ingest": "opx_learning.ingestion",
    "IngestReport": "opx_learning.ingestion",
    "Window": "opx_learning.core.windows",
    "WindowError": "opx_learning.core.windows",
}

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'opx_learning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({"__version__", *__all__})
