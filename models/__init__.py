"""llm2llm models: the student (LoRA/QLoRA training, prediction) and the teacher backends."""

import logging

# bitsandbytes warns on CPUs with AVX512-BF16 that it could not fetch an optional kernel from the Hugging Face
# Hub; llm2llm is offline by design and does not use that kernel, so the warning is only noise.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
