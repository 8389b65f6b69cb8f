"""The Dagster code location: composes assets, checks, schedules, sensors and resources."""

import dagster as dg

defs = dg.Definitions()
