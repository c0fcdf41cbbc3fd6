# Everything runs inside .venv, created from uv.lock by uv (installed for the user if missing).
#   make test   set up (or update) .venv, then run the whole test suite
#   make train  the main job: train the cpu preset on the built-in dataset into runs/main
#   make lab    JupyterLab on the notebooks, on 127.0.0.1 only
#   make bench  time a training iteration at the seed preset, as ratios (a few minutes)
#   make notebooks  rerun every notebook against runs/main and store its outputs (after make train)

PYTHON ?= python3
UV ?= $(shell command -v uv 2>/dev/null || echo "$$($(PYTHON) -m site --user-base)/bin/uv")
VENV_PY := .venv/bin/python
export UV_PYTHON_DOWNLOADS ?= never

.PHONY: setup test train lab bench notebooks

setup:
	@test -x "$(UV)" || { echo "installing uv for this user"; \
	  $(PYTHON) -m pip install --user --quiet uv || \
	  $(PYTHON) -m pip install --user --quiet --break-system-packages uv; }
	@"$(UV)" sync --locked --python "$(PYTHON)" --quiet

test: setup
	$(VENV_PY) -m pytest

train: setup
	.venv/bin/vidgen-train --preset cpu --out runs/main --resume auto

lab: setup
	mkdir -p notebooks
	.venv/bin/jupyter lab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

bench: setup
	$(VENV_PY) -m vidgen_nb.bench

notebooks: setup
	$(VENV_PY) -m vidgen_nb.notebook
