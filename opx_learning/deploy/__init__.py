"""Deployment files shipped with the package (scale-out Dagster instance settings, IAM policies)."""

from pathlib import Path

SCALE_OUT_DAGSTER_YAML = Path(__file__).with_name("dagster.scale-out.yaml")
# Least privilege for the role that runs the code location, API and CLI on the aws backend.
IAM_RUNTIME_POLICY = Path(__file__).with_name("iam-runtime-policy.json")
# What `aws init`, `monitoring deploy` and `seed` need in addition (a separate deploy role).
IAM_ADMIN_POLICY = Path(__file__).with_name("iam-admin-policy.json")
