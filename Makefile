# Two entry points for a new machine: `make demo` and `make test` (both set up .venv first).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
JEPA := $(VENV)/bin/jepa
STAMP := $(VENV)/.installed

.PHONY: setup gl demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0      # first, pinned (these machines keep its CPU build on disk); GPU clusters bring their own
	$(PY) -m pip install --quiet -e ".[test]"       # pins mujoco==3.17.0, ray[default,train,tune,rllib], ogbench
	touch $(STAMP)

# dm_control renders headless through EGL or OSMesa. Where neither loads, install Debian's libosmesa6 if we can
# (root with apt-get); otherwise say so once and carry on: only rendering (data=dmc_clips, ExoRL pixels) needs it,
# and its tests skip with the reason.
GL_PACKAGE ?= libosmesa6
gl: $(STAMP)
	@if ! $(PY) -c "import sys, envs; sys.exit(envs.probe_gl_backend() is None)"; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        echo "installing $(GL_PACKAGE) (OpenGL for headless dm_control rendering)"; \
	        { apt-get update -qq && apt-get install -y -qq $(GL_PACKAGE); } >/dev/null \
	            || echo "notice: could not install $(GL_PACKAGE); rendering (data=dmc_clips, ExoRL pixels) is unavailable and its tests skip" >&2; \
	    else \
	        echo "notice: no OpenGL library (EGL, OSMesa) loads here and installing $(GL_PACKAGE) needs root with apt-get; rendering (data=dmc_clips, ExoRL pixels) is unavailable and its tests skip" >&2; \
	    fi; \
	fi

setup: $(STAMP) gl

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
