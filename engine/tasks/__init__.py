"""Task kinds: prompt rendering, answer extraction, scoring and teacher prompts."""
