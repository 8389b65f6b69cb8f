"""Safety layer tests (SPEC §5), run against the SQLite and the DynamoDB backend."""
