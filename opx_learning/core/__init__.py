"""Dagster-free domain core: plain functions over polars frames and frozen dataclasses."""
