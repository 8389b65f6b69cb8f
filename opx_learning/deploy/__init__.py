"""Deployment files shipped with the package (the scale-out Dagster instance settings)."""

from pathlib import Path

SCALE_OUT_DAGSTER_YAML = Path(__file__).with_name("dagster.scale-out.yaml")
