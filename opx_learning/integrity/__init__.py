"""Integrity of stored data: damage is a P0 "data corruption detected" (docs/integrity.md).

`findings` holds what a failed check reports and the P0 `DATA_CORRUPTION` alert it
raises; `sweep` re-reads the stored snapshots, outcome and asset partitions and audit
records of a window. This package imports neither on purpose: the stores import
`findings`, and `sweep` imports the stores.
"""
