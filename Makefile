# Two entry points for a new machine: `make demo` and `make test` (both set up .venv first).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
JEPA := $(VENV)/bin/jepa
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0      # first, pinned (these machines keep its CPU build on disk); GPU clusters bring their own
	$(PY) -m pip install --quiet -e ".[test]"       # pins mujoco==3.17.0, ray[default,train,tune,rllib], ogbench
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(JEPA) data make moving_shapes
	$(JEPA) sweep sweeps/quickstart.yaml
	$(JEPA) report quickstart

test: setup
	$(PY) -m pytest -q --durations=15

bench: setup
	$(PY) -m bench.ray_overhead
	$(PY) -m bench.sweep_overhead
	$(PY) -m bench.rl_update --hidden 256 --batch 256

clean:
	rm -rf runs .pytest_cache
