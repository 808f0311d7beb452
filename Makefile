# Two commands do all the set-up: `make demo` (the main job on its embedded default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# Without a GPU, install the CPU build of torch first (plain `torch` pulls GBs of CUDA).
# Elsewhere you may need: make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_CPU ?= torch==2.13.0
TORCH_INDEX ?=
# llama-cpp-python built with CUDA: auto (nvcc found AND a GPU answers to nvidia-smi), 1 (always), 0 (never).
LLAMA_CUDA ?= auto

.PHONY: setup demo test lint bench clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  $(PY) -m pip install -q torch; \
	else \
	  $(PY) -m pip install -q $(TORCH_CPU) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	$(PY) -m pip install -q -e '.[dev]'
# pip builds llama-cpp-python for the CPU (and caches that wheel): on a GPU machine the teacher would then run on
# the CPU without a word (llama-cpp-python issue #1693). Rebuild it from source with CUDA, bypassing the cached
# wheel, but only when a GPU answers too: nvcc alone is not enough, since the development VM and CI have nvcc
# without a GPU, where a CUDA build takes a long time and gives a library with nothing to offload to.
	if [ "$(LLAMA_CUDA)" = 1 ] || { [ "$(LLAMA_CUDA)" = auto ] && command -v nvcc >/dev/null 2>&1 \
	     && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; }; then \
	  version=$$($(PY) -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))'); \
	  echo "nvcc and a GPU found: building llama-cpp-python $$version with CUDA (several minutes)"; \
	  CMAKE_ARGS="-DGGML_CUDA=on $$CMAKE_ARGS" $(PY) -m pip install -q --force-reinstall --no-deps \
	    --no-binary llama-cpp-python --no-cache-dir "llama-cpp-python==$$version" || exit 1; \
	  $(PY) -c 'import llama_cpp, sys; sys.exit(not llama_cpp.llama_supports_gpu_offload())' \
	    || { echo "WARNING: llama-cpp-python was built with CUDA but cannot offload; see l2l doctor"; exit 1; }; \
	else \
	  echo "llama-cpp-python stays CPU-only (LLAMA_CUDA=$(LLAMA_CUDA); its CUDA build needs nvcc and a GPU)"; \
	fi
	touch $@

demo: setup
	$(VENV)/bin/l2l demo

# pytest exit 5 means "no tests collected": treat it as a failure of the suite, not a pass.
test: setup lint
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -q -ra; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected"; exit 1; fi; exit $$rc

# engine/, models/ and l2l_tui/ are linted and type-checked (pyproject.toml: [tool.ruff], [tool.mypy])
lint: setup
	$(VENV)/bin/ruff check engine models l2l_tui
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info
