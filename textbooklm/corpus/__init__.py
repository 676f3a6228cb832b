"""Corpus stage: read code from folders, JSONL, Parquet, archives or the stdlib; filter; dedup."""
