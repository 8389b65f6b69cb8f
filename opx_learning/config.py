"""Environment switch and settings, read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("local", "aws")


@dataclass(frozen=True)
class Settings:
    """Runtime settings resolved from the environment.

    Unknown `OPX_BACKEND` values fall back to the embedded `local` backend.
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

    @property
    def outcomes_dir(self) -> Path:
        """Directory of the day-partitioned Parquet outcome store."""
        return self.home / "outcomes"

    @property
    def state_db(self) -> Path:
        """SQLite file holding audit trail, kill switch and rate limits."""
        return self.home / "state.db"

    @property
    def alerts_file(self) -> Path:
        """JSON-lines file that receives alerts on the local backend."""
        return self.home / "alerts.jsonl"


def get_settings(env: dict[str, str] | None = None) -> Settings:
    """Resolve settings from `env` (default: the process environment)."""
    env = dict(os.environ if env is None else env)
    backend = env.get("OPX_BACKEND", "local").strip().lower()
    if backend not in BACKENDS:
        backend = "local"
    principals = env.get("OPX_PRINCIPALS")
    return Settings(
        backend=backend,
        home=Path(env.get("OPX_HOME", ".opx")).expanduser().absolute(),
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
    )
