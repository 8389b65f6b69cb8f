"""What every definition of one code location is built from: its settings, its names and its partitions.

`build_defs` makes one `Location` and hands it to each domain's factory. `Names` applies the
optional key prefix: asset keys get it as their first path part (`team/pattern_summaries_daily`),
jobs, schedules, sensors, resource keys and the dynamic partitions set get `prefix_` in front,
so two locations (two homes) merge into one `dg.Definitions` without a clash.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date
from types import SimpleNamespace
from typing import Any

import dagster as dg

from opx_learning.config import ConfigurationError, Settings

RESOURCE_ROLES = ("safety", "alerts", "outcome_store", "snapshot_store", "asset_storage")
IO_MANAGER = "opx_io_manager"
CUSTOM_WINDOWS = "custom_snapshot_windows"
_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Names:
    """The names of one code location's definitions, with its key prefix (empty: none)."""

    prefix: str = ""

    def __post_init__(self) -> None:
        if self.prefix and not _PREFIX.match(self.prefix):
            raise ConfigurationError(
                f"key_prefix: {self.prefix!r} is not a name (a letter, then letters, digits or _; at most 64)"
            )

    def __call__(self, name: str) -> str:
        """A job, schedule, sensor, resource key or dynamic partitions name, prefixed."""
        return f"{self.prefix}_{name}" if self.prefix else name

    def key(self, name: str) -> dg.AssetKey:
        """The asset key of one of the location's assets."""
        return dg.AssetKey([self.prefix, name]) if self.prefix else dg.AssetKey(name)

    @property
    def key_prefix(self) -> list[str] | None:
        """The `key_prefix` of every asset of the location."""
        return [self.prefix] if self.prefix else None

    def required(self, *roles: str) -> set[str]:
        """The resource keys of `roles` (e.g. "safety", "asset_storage")."""
        return {self(role) for role in roles}

    def resources(self, context: Any) -> SimpleNamespace:
        """The location's resources a context holds, by role (`.safety`, `.asset_storage`, ...; None if not required)."""
        held = context.resources
        return SimpleNamespace(**{role: getattr(held, self(role), None) for role in RESOURCE_ROLES})

    def unprefixed(self, key: dg.AssetKey | str) -> str:
        """The asset's own name, without the location's prefix."""
        return key.path[-1] if isinstance(key, dg.AssetKey) else str(key).rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Partitions:
    """The daily, weekly (Sunday 00:00 UTC), monthly and custom-window partitions of one location."""

    daily: dg.DailyPartitionsDefinition
    weekly: dg.WeeklyPartitionsDefinition
    monthly: dg.MonthlyPartitionsDefinition
    custom: dg.DynamicPartitionsDefinition

    @classmethod
    def build(cls, start: date, names: Names = Names()) -> Partitions:
        """Partitions starting on `start` (weekly on the first Sunday on or after it, monthly the first 1st)."""
        first = start.isoformat()
        return cls(
            daily=dg.DailyPartitionsDefinition(start_date=first, end_offset=0),
            weekly=dg.WeeklyPartitionsDefinition(start_date=first, day_offset=0, end_offset=0),
            monthly=dg.MonthlyPartitionsDefinition(start_date=first, end_offset=0),
            custom=dg.DynamicPartitionsDefinition(name=names(CUSTOM_WINDOWS)),
        )

    @property
    def cadence(self) -> dict[str, dg.TimeWindowPartitionsDefinition]:
        """The time-window partitions by cadence name (DAILY, WEEKLY, MONTHLY)."""
        return {"DAILY": self.daily, "WEEKLY": self.weekly, "MONTHLY": self.monthly}


@dataclass(frozen=True)
class Location:
    """One code location's settings, names and partitions."""

    settings: Settings
    names: Names
    partitions: Partitions

    @classmethod
    def build(cls, settings: Settings, key_prefix: str | None = None) -> Location:
        """The location of `settings`, its names prefixed with `key_prefix` when given."""
        names = Names(key_prefix or "")
        return cls(settings, names, partitions_for(settings.partitions_start, names.prefix))


@functools.lru_cache(maxsize=32)
def partitions_for(start: date, prefix: str = "") -> Partitions:
    """The partitions of a location whose partitions start on `start` (one object per start and prefix)."""
    return Partitions.build(start, Names(prefix))
