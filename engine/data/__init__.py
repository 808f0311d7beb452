"""Data files to validated examples and splits: readers, deduplication, retrieval."""
