"""The `opx-learning` command line."""
