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

# Two pytest workers (one per core: a test compiles and runs on one thread); a file stays on one worker, so its
# jit caches are shared by its tests.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

test-slow: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m slow

cards: $(STAMP)
	$(VENV)/bin/zoo cards

bench: $(STAMP)
	$(PY) benchmarks/load_time.py

clean:
	rm -rf $(VENV) zoo-run
