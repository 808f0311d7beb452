"""The SQLite store: one file per user, its schema and migrations, and run statuses."""
