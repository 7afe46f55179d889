"""The tabular task: a table (CSV, JSON, Parquet, SQL) in, cleansed and checked against a declared schema."""
