"""The checks a teacher candidate must pass, and the filter that applies them."""
