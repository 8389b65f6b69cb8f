"""Environment switch and settings, read in one place."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

BACKENDS = ("local", "aws")
DEFAULT_HOME = "~/.opx"
DEFAULT_PARTITIONS_START = "2025-01-01"


class ConfigurationError(ValueError):
    """A setting in the environment has a value opx_learning cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Runtime settings resolved from the environment.

    `OPX_BACKEND` unset or empty means `local`; any other value than `local` / `aws`
    (any case, trimmed) is a `ConfigurationError`, never a silent fallback, so a typo
    cannot split the safety state. `OPX_HOME` defaults to the absolute `~/.opx`.
    `OPX_PARTITIONS_START` (a `YYYY-MM-DD` day, default 2025-01-01) is the first day of the
    daily, weekly and monthly partitions.
    """

    backend: str
    home: Path
    region: str
    audit_table: str
    config_table: str
    outcomes_table: str
    outcomes_s3_uri: str | None
    assets_s3_uri: str | None
    alerts_topic_arn: str | None
    alerts_topic_name: str
    metrics_namespace: str
    principals_file: Path | None
    aws_endpoint: str | None = None
    partitions_start: date = date(2025, 1, 1)

    @property
    def outcomes_dir(self) -> Path:
        """Directory of the day-partitioned Parquet outcome store."""
        return self.home / "outcomes"

    @property
    def state_db(self) -> Path:
        """SQLite file holding audit trail, kill switch and rate limits."""
        return self.home / "state.db"

    @property
    def store_description(self) -> str:
        """Which safety store this process uses: the SQLite path, or tables + region + endpoint."""
        if self.backend == "aws":
            endpoint = self.aws_endpoint or "the AWS default endpoint"
            return (
                f"aws: DynamoDB tables {self.config_table} (kill switch) and {self.audit_table} (audit) "
                f"in {self.region} at {endpoint}"
            )
        return f"local: {self.state_db}"

    @property
    def alerts_file(self) -> Path:
        """JSON-lines file that receives alerts on the local backend."""
        return self.home / "alerts.jsonl"


# Every variable the settings read, in a fixed order.
_ENV_KEYS = (
    "OPX_BACKEND",
    "OPX_PRINCIPALS",
    "OPX_HOME",
    "OPX_PARTITIONS_START",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "OPX_AUDIT_TABLE",
    "OPX_CONFIG_TABLE",
    "OPX_OUTCOMES_TABLE",
    "OPX_OUTCOMES_S3_URI",
    "OPX_ASSETS_S3_URI",
    "OPX_ALERTS_TOPIC_ARN",
    "OPX_ALERTS_TOPIC_NAME",
    "OPX_METRICS_NAMESPACE",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL",
)


def get_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings from `env` (default: the process environment), as it is at this call."""
    source = os.environ if env is None else env
    # Resolved once per distinct environment; HOME (`~`) and the working directory (a relative
    # OPX_HOME) of the process are part of the key, as `Path.expanduser().absolute()` reads them.
    return _resolve(tuple(source.get(key) for key in _ENV_KEYS), os.environ.get("HOME"), os.getcwd())


@functools.lru_cache(maxsize=64)
def _resolve(values: tuple[str | None, ...], _home: str | None, _cwd: str) -> Settings:
    env = {key: value for key, value in zip(_ENV_KEYS, values, strict=True) if value is not None}
    raw_backend = env.get("OPX_BACKEND", "")
    backend = raw_backend.strip().lower() or "local"
    if backend not in BACKENDS:
        raise ConfigurationError(
            f"OPX_BACKEND: {raw_backend!r} is not a backend; use 'local' or 'aws' (unset means local)"
        )
    principals = env.get("OPX_PRINCIPALS")
    raw_home = env.get("OPX_HOME", "").strip() or DEFAULT_HOME
    return Settings(
        partitions_start=partitions_start(env),
        backend=backend,
        home=Path(raw_home).expanduser().absolute(),
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        audit_table=env.get("OPX_AUDIT_TABLE", "opx-automation-audit"),
        config_table=env.get("OPX_CONFIG_TABLE", "opx-automation-config"),
        outcomes_table=env.get("OPX_OUTCOMES_TABLE", "opx-outcomes"),
        outcomes_s3_uri=env.get("OPX_OUTCOMES_S3_URI") or None,
        assets_s3_uri=env.get("OPX_ASSETS_S3_URI") or None,
        alerts_topic_arn=env.get("OPX_ALERTS_TOPIC_ARN") or None,
        alerts_topic_name=env.get("OPX_ALERTS_TOPIC_NAME", "opx-learning-operations-alerts.fifo"),
        metrics_namespace=env.get("OPX_METRICS_NAMESPACE", "LearningOperations"),
        principals_file=Path(principals).expanduser() if principals else None,
        aws_endpoint=env.get("AWS_ENDPOINT_URL_DYNAMODB") or env.get("AWS_ENDPOINT_URL") or None,
    )


def partitions_start(env: dict[str, str] | None = None) -> date:
    """The first partition day from `OPX_PARTITIONS_START` (unset or empty: 2025-01-01).

    Raises:
        ConfigurationError: not a `YYYY-MM-DD` day from 1970-01-01 to 2199-12-31.
    """
    raw = (os.environ if env is None else env).get("OPX_PARTITIONS_START", "")
    text = raw.strip() or DEFAULT_PARTITIONS_START
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None or not date(1970, 1, 1) <= day < date(2200, 1, 1):
        raise ConfigurationError(
            f"OPX_PARTITIONS_START: {raw!r} is not a day (YYYY-MM-DD, 1970-01-01..2199-12-31); "
            f"unset means {DEFAULT_PARTITIONS_START}"
        )
    return day
