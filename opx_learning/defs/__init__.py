"""Dagster definitions of opx_learning: partitions, assets, checks, schedules, sensors, jobs."""
