"""The documented scale-out dagster.yaml (Postgres, ECS launcher, S3 logs) is a valid instance config."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config

from opx_learning.deploy import SCALE_OUT_DAGSTER_YAML

ENV = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "secret",
    "DAGSTER_PG_DB": "dagster",
    "OPX_DAGSTER_LOGS_BUCKET": "opx-dagster-logs",
}


@pytest.fixture
def scale_out_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    shutil.copy(SCALE_OUT_DAGSTER_YAML, tmp_path / "dagster.yaml")
    return tmp_path


def test_scale_out_instance_config_validates(scale_out_home: Path) -> None:
    config, _ = dagster_instance_config(str(scale_out_home))
    assert config["storage"]["postgres"]["postgres_db"]["hostname"] == {"env": "DAGSTER_PG_HOST"}
    assert config["run_launcher"]["class"] == "EcsRunLauncher"
    assert config["run_monitoring"]["enabled"] is True


@pytest.mark.parametrize("section", ["run_launcher", "run_coordinator", "compute_logs"])
def test_scale_out_pluggable_classes_accept_their_config(section: str) -> None:
    entry = yaml.safe_load(SCALE_OUT_DAGSTER_YAML.read_text())[section]
    module = entry["module"].replace("dagster.core.", "dagster._core.")  # Dagster's own public alias
    cls = getattr(importlib.import_module(module), entry["class"])
    result = validate_config(cls.config_type(), entry.get("config", {}))
    assert result.success, [error.message for error in result.errors]


def test_scale_out_file_rejects_a_typo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    broken = SCALE_OUT_DAGSTER_YAML.read_text().replace("run_monitoring:", "run_monitorin:")
    (tmp_path / "dagster.yaml").write_text(broken)
    with pytest.raises(Exception, match="run_monitorin"):
        dagster_instance_config(str(tmp_path))
