"""Safety layer (docs/design.md#safety): kill switch, audit trail, authority, rate limits, maintenance windows.

Entry point: `opx_learning.backends.guard_for(settings)` (the `Guard` is in `guard.py`); stores in `sqlite_backend.py`
(local) and `dynamo_backend.py` (aws). No Dagster import here; the Dagster resource
lives in `opx_learning.resources.safety`.
"""
