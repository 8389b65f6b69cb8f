"""Deployment files shipped with the package: Dagster instance settings, the gRPC workspace, IAM policies."""

from pathlib import Path

_HERE = Path(__file__).parent
SCALE_OUT_DAGSTER_YAML = _HERE / "dagster.scale-out.yaml"
LOCAL_PRODUCTION_DAGSTER_YAML = _HERE / "dagster.local-production.yaml"
GRPC_WORKSPACE_YAML = _HERE / "workspace.grpc.yaml"
# Least privilege for the role that runs the code location, API and CLI on the aws backend.
IAM_RUNTIME_POLICY = _HERE / "iam-runtime-policy.json"
# What `aws init`, `monitoring deploy` and `seed` need in addition (a separate deploy role).
IAM_ADMIN_POLICY = _HERE / "iam-admin-policy.json"
