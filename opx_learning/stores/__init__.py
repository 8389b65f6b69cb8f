"""Stores behind abstract interfaces, with local (Parquet) and AWS (DynamoDB) backends."""
