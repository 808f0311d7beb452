"""What runs and sweeps look like as tables, curves and comparisons."""
