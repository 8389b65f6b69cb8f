"""Dagster resources: safety, stores, IO managers."""
