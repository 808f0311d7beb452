"""llm2llm models: the student (LoRA/QLoRA training, prediction) and the teacher backends."""
