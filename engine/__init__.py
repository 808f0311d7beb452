"""llm2llm engine: the LLM2LLM loop, config, store, tasks, data and CLI (headless; never imports textual)."""
