"""Safety layer tests, run against the SQLite and the DynamoDB backend."""
