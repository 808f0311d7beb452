"""The run config: its schema, loading and overrides, and the task presets."""
