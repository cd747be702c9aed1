"""citeqa ingest package."""
