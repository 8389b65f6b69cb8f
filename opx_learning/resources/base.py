"""The configuration every opx_learning resource carries, with one field set per backend.

A resource is built from `Settings` by the composition root (`opx_learning.build_defs`) and
holds the values themselves, so the UI shows which home or which tables a code location
uses, and nothing is read from the environment when a resource is used. Each role
(safety, alerts, stores) has a local and an aws class: the local ones carry the home, the
aws ones the tables, buckets, topic, region and endpoint as well.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from pathlib import Path
from typing import Any, ClassVar, Self

import dagster as dg

from opx_learning.config import Settings

# A resource field is the Settings field of the same name (one differs: the endpoint).
_SETTING_OF = {"endpoint_url": "aws_endpoint"}
_SETTINGS = frozenset(f.name for f in fields(Settings))


def _plain(value: Any) -> Any:
    """A setting as a resource's config value (paths and days as strings)."""
    if isinstance(value, Path):
        return str(value)
    return value.isoformat() if isinstance(value, date) else value


class OpxResource(dg.ConfigurableResource):
    """Fields shared by every backend: the home (state, alerts file), principals file, partitions start, safety limits."""

    home: str
    principals_file: str | None = None
    partitions_start: str = "2025-01-01"
    rate_limits: str | None = None
    automation_rate_limits: str | None = None
    maintenance_windows: str | None = None

    BACKEND: ClassVar[str] = "local"

    @classmethod
    def _setting_names(cls) -> dict[str, str]:
        """This class's fields that stand for a setting, by field name."""
        return {name: _SETTING_OF.get(name, name) for name in cls.model_fields if _SETTING_OF.get(name, name) in _SETTINGS}

    def settings(self) -> Settings:
        """The settings these fields stand for (the others keep their defaults)."""
        values = {setting: getattr(self, name) for name, setting in self._setting_names().items()}
        return Settings(backend=self.BACKEND, **values)

    @classmethod
    def settings_fields(cls, settings: Settings) -> dict[str, Any]:
        """The field values of this class for `settings`."""
        return {name: _plain(getattr(settings, setting)) for name, setting in cls._setting_names().items()}

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
