# `make demo` and `make test` work on a fresh machine: they create .venv and install the project when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow cards bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/zoo run elcd-lasa8d

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

cards: $(STAMP)
	$(VENV)/bin/zoo cards

bench: $(STAMP)
	$(PY) benchmarks/load_time.py

clean:
	rm -rf $(VENV) zoo-run
