"""Checks a user runs before a run: doctor and the dry run."""
