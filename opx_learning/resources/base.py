"""The configuration every opx_learning resource carries, with one field set per backend.

A resource is built from `Settings` by the composition root (`opx_learning.build_defs`) and
holds the values themselves, so the UI shows which home or which tables a code location
uses, and nothing is read from the environment when a resource is used. Each role
(safety, alerts, stores) has a local and an aws class: the local ones carry the home, the
aws ones the tables, buckets, topic, region and endpoint as well.
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Self

import dagster as dg

from opx_learning.config import Settings


class OpxResource(dg.ConfigurableResource):
    """Fields shared by every backend: the home (state, alerts file), principals file, partitions start, safety limits."""

    home: str
    principals_file: str | None = None
    partitions_start: str = "2025-01-01"
    rate_limits: str | None = None
    maintenance_windows: str | None = None

    BACKEND: ClassVar[str] = "local"

    def settings(self) -> Settings:
        """The settings these fields stand for."""
        return Settings(backend=self.BACKEND, **self._settings_fields())

    def _settings_fields(self) -> dict[str, Any]:
        return {
            "home": self.home,
            "principals_file": self.principals_file,
            "partitions_start": date.fromisoformat(self.partitions_start),
            "rate_limits": self.rate_limits,
            "maintenance_windows": self.maintenance_windows,
        }

    @classmethod
    def settings_fields(cls, settings: Settings) -> dict[str, Any]:
        """The field values of this class for `settings`."""
        return {
            "home": str(settings.home),
            "principals_file": str(settings.principals_file) if settings.principals_file else None,
            "partitions_start": settings.partitions_start.isoformat(),
            "rate_limits": settings.rate_limits,
            "maintenance_windows": settings.maintenance_windows,
        }

    @classmethod
    def from_settings(cls, settings: Settings, **extra: Any) -> Self:
        """This resource configured with `settings` (plus the role's own fields in `extra`)."""
        return cls(**cls.settings_fields(settings), **extra)


class AwsFields(OpxResource):
    """The aws backend's fields: region, endpoint, DynamoDB tables, S3 locations, SNS topic, metrics namespace."""

    region: str = "us-east-1"
    endpoint_url: str | None = None
    audit_table: str = "opx-automation-audit"
    config_table: str = "opx-automation-config"
    outcomes_table: str = "opx-outcomes"
    outcomes_s3_uri: str | None = None
    assets_s3_uri: str | None = None
    alerts_topic_arn: str | None = None
    alerts_topic_name: str = "opx-learning-operations-alerts.fifo"
    metrics_namespace: str = "LearningOperations"

    BACKEND: ClassVar[str] = "aws"

    _AWS: ClassVar[tuple[str, ...]] = (
        "region",
        "audit_table",
        "config_table",
        "outcomes_table",
        "outcomes_s3_uri",
        "assets_s3_uri",
        "alerts_topic_arn",
        "alerts_topic_name",
        "metrics_namespace",
    )

    def _settings_fields(self) -> dict[str, Any]:
        own = {name: getattr(self, name) for name in self._AWS}
        return super()._settings_fields() | own | {"aws_endpoint": self.endpoint_url}

    @classmethod
    def settings_fields(cls, settings: Settings) -> dict[str, Any]:
        """The field values of this class for `settings`."""
        own = {name: getattr(settings, name) for name in cls._AWS}
        return super().settings_fields(settings) | own | {"endpoint_url": settings.aws_endpoint}
