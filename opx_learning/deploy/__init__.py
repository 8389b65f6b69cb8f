"""Deployment files shipped with the package: Dagster instance settings and the gRPC workspace."""

from pathlib import Path

_HERE = Path(__file__).parent
SCALE_OUT_DAGSTER_YAML = _HERE / "dagster.scale-out.yaml"
LOCAL_PRODUCTION_DAGSTER_YAML = _HERE / "dagster.local-production.yaml"
GRPC_WORKSPACE_YAML = _HERE / "workspace.grpc.yaml"
