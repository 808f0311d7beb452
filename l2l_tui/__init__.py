"""llm2llm terminal app (Textual): observes and commands the engine through the store."""
