# The two commands a user needs: `make run` (install + start the app) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test lint bench

setup:
	./setup.sh

run: setup
	$(PY) app.py

test: setup
	$(PY) -m ruff check ensemble tests bench app.py
	$(PY) -m pytest

bench: setup
	for b in bench/[!_]*.py; do $(PY) $$b || exit 1; done
