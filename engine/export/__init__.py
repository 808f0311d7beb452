"""A finished run out of the store: training sets, datasets, adapters, cards and their checks."""
