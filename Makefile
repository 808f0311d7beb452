# Two commands do all the set-up: `make demo` (the main job on its embedded default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# Without a GPU, install the CPU build of torch first (plain `torch` pulls GBs of CUDA).
# Elsewhere you may need: make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_CPU ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: setup demo test bench clean
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
	touch $@

demo: setup
	$(VENV)/bin/l2l demo

# pytest exit 5 means "no tests collected": treat it as a failure of the suite, not a pass.
test: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -q -ra; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected"; exit 1; fi; exit $$rc

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info
