# The two commands of the README:
#   make train   create .venv if absent, install with the tested constraints, run the default job
#   make test    create .venv if absent, install with test extras, run the test suite
# Both are idempotent: the install step reruns only when pyproject.toml or constraints.txt change.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -m "not slow" -n 2
ARGS ?=

.PHONY: install train test test-all device-wheels device-check clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[train,dev]"
	@touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/visiontrain train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: PYTEST_ARGS = -n 2
test-all: test

# the GPU check (docs/contributing.md: "The GPU check"): pack .device/ here, then a dry run without CUDA
device-wheels: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/device_wheels.sh

device-check: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/device_check.sh $(ARGS)

clean:
	rm -rf $(VENV) outputs .pytest_cache
