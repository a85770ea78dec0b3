# Two commands do all set-up: `make lab` and `make test`. Everything else is for developers.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# JupyterLab refuses to run as root without this flag; participants' laptops are not root.
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: lab reset test setup system notebooks lint types bench clean

# Participants work in workshop/ (untracked): copies of notebooks/ with outputs cleared, made only
# where missing, so `git pull` never conflicts with their work. `make reset NB=02` re-copies one.
lab: setup
	$(PY) -m ipykernel install --sys-prefix --name labkit --display-name "labkit (Python 3)" >/dev/null
	$(PY) -m labkit.notebook.nbtools --workshop notebooks workshop
	$(VENV)/bin/jupyter lab --notebook-dir=workshop $(ROOT_FLAG)

reset: $(VENV)/.installed
	@test -n "$(NB)" || { echo "say which notebook: make reset NB=02"; exit 2; }
	$(PY) -m labkit.notebook.nbtools --workshop notebooks workshop $(NB)

test: setup
	$(VENV)/bin/ruff check labkit tests bench
	$(VENV)/bin/mypy labkit
	$(PY) -m pytest

setup: $(VENV)/.installed system node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[lab,test]'
	touch $@

# System pieces (a browser, certutil, nginx): installed with apt-get as root on Debian, otherwise
# this stops with the exact command to run.
system: $(VENV)/.installed
	$(PY) -m labkit.system --install

# The real socket.io browser client, from the npm registry (pinned in package-lock.json).
node_modules/.installed: package.json package-lock.json | system
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Re-execute the workshop notebooks and stamp them with this labkit's fingerprint.
notebooks: setup
	$(PY) -m labkit.notebook.nbtools notebooks/*.ipynb

lint: setup
	$(VENV)/bin/ruff check labkit tests bench

types: setup
	$(VENV)/bin/mypy labkit

bench: setup
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache node_modules
