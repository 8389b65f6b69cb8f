"""The documented deploy files are valid: the scale-out and local production dagster.yaml, the gRPC workspace.

They run for real against PostgreSQL in opx_learning_tests/postgres.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config

from opx_learning.deploy import (
    GRPC_WORKSPACE_YAML,
    LOCAL_PRODUCTION_DAGSTER_YAML,
    SCALE_OUT_DAGSTER_YAML,
)

ENV = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_PORT": "6543",
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
    assert config["storage"]["postgres"]["postgres_db"]["port"] == {"env": "DAGSTER_PG_PORT"}
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


@pytest.mark.parametrize("path", [SCALE_OUT_DAGSTER_YAML, LOCAL_PRODUCTION_DAGSTER_YAML], ids=lambda p: p.name)
def test_deploy_instance_connects_with_psycopg2_from_documented_variables(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster_postgres.utils import pg_url_from_config
    from sqlalchemy.engine import make_url

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "dagster.yaml").write_text(path.read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    postgres_db = config["storage"]["postgres"]["postgres_db"]
    assert {key: value for key, value in postgres_db.items() if isinstance(value, dict)} == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
    }
    resolved = {key: ENV[value["env"]] if isinstance(value, dict) else value for key, value in postgres_db.items()}
    url = make_url(pg_url_from_config({"postgres_db": resolved}))
    assert (url.drivername, url.host, url.port, url.username, url.database) == (
        "postgresql+psycopg2",
        "db.internal",
        6543,
        "dagster",
        "dagster",
    )
    assert url.get_dialect().driver == "psycopg2"


def test_local_production_instance_matches_the_scale_out_queue() -> None:
    local = yaml.safe_load(LOCAL_PRODUCTION_DAGSTER_YAML.read_text())
    scale_out = yaml.safe_load(SCALE_OUT_DAGSTER_YAML.read_text())
    assert local["storage"] == scale_out["storage"]
    assert local["run_coordinator"] == scale_out["run_coordinator"]
    assert local["run_launcher"]["class"] == "DefaultRunLauncher"
    assert local["run_monitoring"]["enabled"] is True
    assert "compute_logs" not in local  # Dagster's default: local files under $DAGSTER_HOME/storage


def test_grpc_workspace_reads_host_and_port_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagster._core.workspace.config_schema import process_workspace_config

    monkeypatch.setenv("OPX_GRPC_HOST", "code-server.internal")
    monkeypatch.setenv("OPX_GRPC_PORT", "4266")
    result = process_workspace_config(yaml.safe_load(GRPC_WORKSPACE_YAML.read_text()))
    assert result.success, [error.message for error in result.errors]
    (entry,) = result.value["load_from"]
    assert entry["grpc_server"] == {
        "host": "code-server.internal",
        "port": 4266,
        "location_name": "opx_learning.definitions",
    }
