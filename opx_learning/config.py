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
DEFAULT_UI_URL = "http://127.0.0.1:3000"
DEFAULT_LOCATION = "opx_learning.definitions"
DEFAULT_API_MAX_RUNS = 4


class ConfigurationError(ValueError):
    """A setting in the environment has a value opx_learning cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Everything opx_learning is configured with: the one input of `build_defs` and of every command.

    Construct it directly (every field has the default named in docs/configuration.md), e.g.
    `Settings(home="/srv/opx")`, or read the `OPX_*` variables with `Settings.from_env()`.
    `backend` is `local` or `aws` (any case, trimmed; anything else is a `ConfigurationError`,
    never a silent fallback, so a typo cannot split the safety state); `home` becomes an
    absolute path; `partitions_start` (a date or `YYYY-MM-DD`) is the first day of the daily,
    weekly and monthly partitions. `rate_limits` (`OPX_RATE_LIMITS`, e.g. `"CALIBRATION=3,SNAPSHOT=10"`),
    `automation_rate_limits` (`OPX_AUTOMATION_RATE_LIMITS`, the same format, for principal `automation`)
    and `maintenance_windows` (`OPX_MAINTENANCE_WINDOWS`: JSON, YAML, a file, or `none`) are kept as
    given and parsed by the guard, which names the variable in its error; `trusted_identity_header`
    (`OPX_TRUSTED_IDENTITY_HEADER`) is the REST gateway's identity header (None: not trusted);
    `api_max_runs` (`OPX_API_MAX_RUNS`) the REST API's concurrent background runs; `launch`
    (`OPX_LAUNCH`) how the CLI, the REST API and the demo start runs: `in-process` (fast, but the
    run carries no code-location origin) or `location` (through the code location, as the UI does).
    """

    backend: str = "local"
    home: Path = Path(DEFAULT_HOME)
    region: str = "us-east-1"
    audit_table: str = "opx-automation-audit"
    config_table: str = "opx-automation-config"
    outcomes_table: str = "opx-outcomes"
    outcomes_s3_uri: str | None = None
    assets_s3_uri: str | None = None
    alerts_topic_arn: str | None = None
    alerts_topic_name: str = "opx-learning-operations-alerts.fifo"
    metrics_namespace: str = "LearningOperations"
    principals_file: Path | None = None
    aws_endpoint: str | None = None
    partitions_start: date = date(2025, 1, 1)
    rate_limits: str | None = None
    automation_rate_limits: str | None = None
    maintenance_windows: str | None = None
    trusted_identity_header: str | None = None
    api_max_runs: int = DEFAULT_API_MAX_RUNS
    dagster_home: Path | None = None
    ui_url: str = DEFAULT_UI_URL
    dagster_location: str = DEFAULT_LOCATION
    launch: str = "in-process"

    def __post_init__(self) -> None:
        raw_backend = self.backend
        backend = (raw_backend or "").strip().lower() or "local"
        if backend not in BACKENDS:
            raise ConfigurationError(
                f"backend (OPX_BACKEND): {raw_backend!r} is not a backend; use 'local' or 'aws' (unset means local)"
            )
        object.__setattr__(self, "backend", backend)
        object.__setattr__(self, "home", Path(str(self.home).strip() or DEFAULT_HOME).expanduser().absolute())
        if self.principals_file is not None and str(self.principals_file).strip():
            object.__setattr__(self, "principals_file", Path(self.principals_file).expanduser())
        else:
            object.__setattr__(self, "principals_file", None)
        object.__setattr__(self, "partitions_start", _start_day(self.partitions_start))
        header = (self.trusted_identity_header or "").strip()
        object.__setattr__(self, "trusted_identity_header", header or None)
        object.__setattr__(self, "api_max_runs", _max_runs(self.api_max_runs))
        dagster_home = str(self.dagster_home or "").strip()
        object.__setattr__(self, "dagster_home", Path(dagster_home).expanduser().absolute() if dagster_home else None)
        object.__setattr__(self, "ui_url", (str(self.ui_url or "").strip() or DEFAULT_UI_URL).rstrip("/"))
        object.__setattr__(self, "dagster_location", str(self.dagster_location or "").strip() or DEFAULT_LOCATION)
        object.__setattr__(self, "launch", _launch(self.launch))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from the `OPX_*` (and standard `AWS_*`) variables of `env` (default: the process environment)."""
        return get_settings(env)

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
    def assets_base(self) -> str:
        """Where asset partitions are stored: `assets_s3_uri` on aws (when set), else `<home>/assets`."""
        if self.backend == "aws" and self.assets_s3_uri:
            return self.assets_s3_uri.rstrip("/")
        return str(self.home / "assets")

    @property
    def dagster_home_dir(self) -> Path:
        """The Dagster instance's directory: `dagster_home` (`DAGSTER_HOME`), else `<home>/dagster_home`."""
        return self.dagster_home or self.home / "dagster_home"

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
    "OPX_RATE_LIMITS",
    "OPX_AUTOMATION_RATE_LIMITS",
    "OPX_MAINTENANCE_WINDOWS",
    "OPX_TRUSTED_IDENTITY_HEADER",
    "OPX_API_MAX_RUNS",
    "DAGSTER_HOME",
    "OPX_UI_URL",
    "OPX_DAGSTER_LOCATION",
    "OPX_LAUNCH",
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
    defaults = Settings.__dataclass_fields__
    return Settings(
        partitions_start=partitions_start(env),
        backend=env.get("OPX_BACKEND", ""),
        home=Path(env.get("OPX_HOME", "").strip() or DEFAULT_HOME),
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or defaults["region"].default,
        audit_table=env.get("OPX_AUDIT_TABLE", defaults["audit_table"].default),
        config_table=env.get("OPX_CONFIG_TABLE", defaults["config_table"].default),
        outcomes_table=env.get("OPX_OUTCOMES_TABLE", defaults["outcomes_table"].default),
        outcomes_s3_uri=env.get("OPX_OUTCOMES_S3_URI") or None,
        assets_s3_uri=env.get("OPX_ASSETS_S3_URI") or None,
        alerts_topic_arn=env.get("OPX_ALERTS_TOPIC_ARN") or None,
        alerts_topic_name=env.get("OPX_ALERTS_TOPIC_NAME", defaults["alerts_topic_name"].default),
        metrics_namespace=env.get("OPX_METRICS_NAMESPACE", defaults["metrics_namespace"].default),
        principals_file=Path(env["OPX_PRINCIPALS"]) if env.get("OPX_PRINCIPALS") else None,
        aws_endpoint=env.get("AWS_ENDPOINT_URL_DYNAMODB") or env.get("AWS_ENDPOINT_URL") or None,
        rate_limits=env.get("OPX_RATE_LIMITS"),
        automation_rate_limits=env.get("OPX_AUTOMATION_RATE_LIMITS"),
        maintenance_windows=env.get("OPX_MAINTENANCE_WINDOWS"),
        trusted_identity_header=env.get("OPX_TRUSTED_IDENTITY_HEADER"),
        api_max_runs=env.get("OPX_API_MAX_RUNS", "").strip() or DEFAULT_API_MAX_RUNS,
        dagster_home=env.get("DAGSTER_HOME") or None,
        ui_url=env.get("OPX_UI_URL") or DEFAULT_UI_URL,
        dagster_location=env.get("OPX_DAGSTER_LOCATION") or DEFAULT_LOCATION,
        launch=env.get("OPX_LAUNCH", ""),
    )


LAUNCH_PATHS = ("in-process", "location")


def _launch(value: str) -> str:
    path = str(value or "").strip().lower() or LAUNCH_PATHS[0]
    if path not in LAUNCH_PATHS:
        raise ConfigurationError(
            f"launch (OPX_LAUNCH): {value!r} is not a launch path; use 'in-process' or 'location' (unset means in-process)"
        )
    return path


def _max_runs(value: int | str) -> int:
    try:
        runs = int(value)
    except (TypeError, ValueError):
        runs = 0
    if runs < 1:
        raise ConfigurationError(
            f"api_max_runs (OPX_API_MAX_RUNS): {value!r} is not a positive whole number; unset means {DEFAULT_API_MAX_RUNS}"
        )
    return runs


def _start_day(value: date | str, label: str = "partitions_start (OPX_PARTITIONS_START)") -> date:
    day = value if isinstance(value, date) else None
    if day is None:
        text = str(value).strip() or DEFAULT_PARTITIONS_START
        try:
            day = date.fromisoformat(text) if len(text) == 10 else None
        except ValueError:
            day = None
    if day is None or not date(1970, 1, 1) <= day < date(2200, 1, 1):
        raise ConfigurationError(
            f"{label}: {value!r} is not a day (YYYY-MM-DD, 1970-01-01..2199-12-31); unset means {DEFAULT_PARTITIONS_START}"
        )
    return day


def partitions_start(env: Mapping[str, str] | None = None) -> date:
    """The first partition day from `OPX_PARTITIONS_START` (unset or empty: 2025-01-01).

    Raises:
        ConfigurationError: not a `YYYY-MM-DD` day from 1970-01-01 to 2199-12-31.
    """
    return _start_day((os.environ if env is None else env).get("OPX_PARTITIONS_START", ""), "OPX_PARTITIONS_START")
