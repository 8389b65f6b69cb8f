"""`OpxLearningComponent`: the code location as a Dagster component for a `dg` project's `defs.yaml`.

    type: opx_learning.OpxLearningComponent
    attributes:
      home: /srv/opx
      key_prefix: learning

Its attributes are the fields of `Settings` plus `key_prefix`; omitted ones take the
settings' defaults (docs/embedding.md).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import dagster as dg

from opx_learning.build import build_defs
from opx_learning.config import Settings


class OpxLearningComponent(dg.Component, dg.Resolvable, dg.Model):
    """opx_learning's assets, checks, jobs, schedules, sensors and resources for one home."""

    backend: str = "local"
    home: str = "~/.opx"
    partitions_start: str = "2025-01-01"
    principals_file: str | None = None
    region: str = "us-east-1"
    aws_endpoint: str | None = None
    audit_table: str = "opx-automation-audit"
    config_table: str = "opx-automation-config"
    outcomes_table: str = "opx-outcomes"
    outcomes_s3_uri: str | None = None
    assets_s3_uri: str | None = None
    alerts_topic_arn: str | None = None
    alerts_topic_name: str = "opx-learning-operations-alerts.fifo"
    metrics_namespace: str = "LearningOperations"
    rate_limits: str | None = None
    automation_rate_limits: str | None = None
    maintenance_windows: str | None = None
    trusted_identity_header: str | None = None
    api_max_runs: int = 4
    dagster_home: str | None = None
    ui_url: str = "http://127.0.0.1:3000"
    dagster_location: str = "opx_learning.definitions"
    launch: str = "in-process"
    key_prefix: str | None = None

    def settings(self) -> Settings:
        """The settings these attributes stand for."""
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(Settings)}
        return Settings(**values)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """The code location of these settings, prefixed with `key_prefix`."""
        return build_defs(self.settings(), key_prefix=self.key_prefix)
