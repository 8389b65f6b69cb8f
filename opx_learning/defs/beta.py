"""Dagster APIs that opx_learning uses while Dagster 1.13 marks them beta or preview, without their notices.

Each notice is silenced only around the one call that emits it (`warnings.catch_warnings`
restores the process's filters afterwards), so importing opx_learning installs no global
warning filter and every other warning is shown as the importing process chooses:

- `backfill_policy` of `dg.asset` (beta): single-run backfill policies, the documented way to
  backfill a range of partitions in one run;
- `allow_nonexistent_upstream_partitions` of `dg.TimeWindowPartitionMapping` (beta): the
  "month before" mapping, whose first partition has no month before it;
- `use_user_code_server` of `dg.AutomationConditionSensorDefinition` (beta): the automation
  sensor evaluated in the code location, where its conditions can read the instance;
- `partitions_def` of `dg.AssetCheckSpec` (preview): per-partition check results;
- `dg.observable_source_asset` and `dg.DataVersionsByPartition` (beta): the outcome store's
  days with a data version each.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg

BETA_PARAMETERS = r"Parameter `(backfill_policy|allow_nonexistent_upstream_partitions|use_user_code_server)`"
PARTITIONED_CHECK = r"Specifying a partitions_def on an AssetCheckSpec"
OBSERVABLE_SOURCE = r"(Function `observable_source_asset`|Class `DataVersionsByPartition`)"


@contextmanager
def quiet_beta() -> Iterator[None]:
    """Within the block only: no notice for the beta and preview APIs listed in the module docstring."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=BETA_PARAMETERS, category=dg.BetaWarning)
        warnings.filterwarnings("ignore", message=PARTITIONED_CHECK, category=dg.PreviewWarning)
        warnings.filterwarnings("ignore", message=OBSERVABLE_SOURCE, category=dg.BetaWarning)
        yield


def asset(**kwargs: Any) -> Callable[..., dg.AssetsDefinition]:
    """`dg.asset(**kwargs)` (e.g. with `backfill_policy`), without the beta notice."""
    with quiet_beta():
        return dg.asset(**kwargs)


def time_window_mapping(**kwargs: Any) -> dg.TimeWindowPartitionMapping:
    """`dg.TimeWindowPartitionMapping(**kwargs)` (e.g. with `allow_nonexistent_upstream_partitions`), without the beta notice."""
    with quiet_beta():
        return dg.TimeWindowPartitionMapping(**kwargs)


def asset_check_spec(*args: Any, **kwargs: Any) -> dg.AssetCheckSpec:
    """`dg.AssetCheckSpec(...)` (e.g. with `partitions_def`), without the preview notice."""
    with quiet_beta():
        return dg.AssetCheckSpec(*args, **kwargs)


def observable_source_asset(**kwargs: Any) -> Callable[..., dg.SourceAsset]:
    """`dg.observable_source_asset(**kwargs)` (a decorator factory), without the beta notice when it decorates."""
    with quiet_beta():
        decorator = dg.observable_source_asset(**kwargs)

    def decorate(fn: Callable[..., Any]) -> dg.SourceAsset:
        with quiet_beta():
            return decorator(fn)

    return decorate


def automation_condition_sensor(**kwargs: Any) -> dg.AutomationConditionSensorDefinition:
    """`dg.AutomationConditionSensorDefinition(**kwargs)` (e.g. with `use_user_code_server`), without the beta notice."""
    with quiet_beta():
        return dg.AutomationConditionSensorDefinition(**kwargs)
