"""Ingestion of outcome exports into the active backend's outcome store (`opx-learning ingest`, `opx.ingest`)."""

from opx_learning.ingestion.run import (
    FORMATS,
    FileCounts,
    IngestError,
    IngestReport,
    ingest,
    reasons_by_category,
)

__all__ = ["FORMATS", "FileCounts", "IngestError", "IngestReport", "ingest", "reasons_by_category"]
