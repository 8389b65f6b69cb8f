"""The tests' way to the code location: built with `build_defs` from the settings the test's environment names."""

from __future__ import annotations

from typing import Any

import dagster as dg

from opx_learning.build import build_defs, build_resources
from opx_learning.config import Settings


def settings() -> Settings:
    """The settings of the test's environment (its OPX_HOME, OPX_BACKEND, ...)."""
    return Settings.from_env()


def resources(key_prefix: str | None = None) -> dict[str, Any]:
    """The configured resources of the test's settings, by resource key."""
    return build_resources(settings(), key_prefix)


def resource(role: str) -> Any:
    """One configured resource of the test's settings (`safety`, `alerts`, `outcome_store`, ...)."""
    return resources()[role]


def location() -> dg.Definitions:
    """The whole code location of the test's settings."""
    return build_defs(settings())


def asset(name: str) -> dg.AssetsDefinition:
    """One asset of the test's code location."""
    return location().get_assets_def(name)


def schedule(name: str) -> dg.ScheduleDefinition:
    """One schedule of the test's code location."""
    return location().get_schedule_def(name)


def sensor(name: str) -> dg.SensorDefinition:
    """One sensor of the test's code location."""
    return location().get_sensor_def(name)


def partitions() -> Any:
    """The daily, weekly, monthly and custom partitions of the test's settings."""
    from opx_learning.defs.location import partitions_for

    return partitions_for(settings().partitions_start)
