# `make demo` and `make test` work on a fresh machine: they create .venv and install the project when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-rl test-slow rl cards bench data clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The optional extra rl (crax-bench, mujoco, mujoco-mjx: the acs family's environment) into the same .venv; without it
# the RL tests skip and say so. CI (.ci/run) installs it.
RL_STAMP := $(VENV)/.installed-rl
$(RL_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,rl]'
	touch $(RL_STAMP)

rl: $(RL_STAMP)

demo: $(STAMP)
	$(VENV)/bin/zoo run elcd-lasa8d

# Two pytest workers (one per core: a test compiles and runs on one thread); a file stays on one worker, so its
# jit caches are shared by its tests.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

# The RL tests (marked rl: the acs family on MuJoCo-MJX) with the extra installed; a missing extra fails them here.
test-rl: $(RL_STAMP)
	ZOO_REQUIRE_RL=1 $(PY) -m pytest -q -n 2 --dist loadfile -m 'rl and not slow'

test-slow: $(STAMP)
	ZOO_TEST_XLA_DEFAULT=1 $(PY) -m pytest -q -n 2 --dist loadfile -m slow

# Real image data offline: Debian's dataset-fashion-mnist (Fashion-MNIST's four IDX files in
# /usr/share/datasets/fashion-mnist, read by zoo/data/fashion_mnist.py). Needs apt and root (sudo when not root).
# Without apt: put the four .gz files from github.com/zalandoresearch/fashion-mnist (data/fashion/) in a directory
# and set ZOO_FASHION_MNIST_DIR to it.
data:
	@if [ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then echo "dataset-fashion-mnist: installed"; \
	elif command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y dataset-fashion-mnist || { $$SUDO apt-get update && $$SUDO apt-get install -y dataset-fashion-mnist; }; \
	else echo "no apt-get: download the four Fashion-MNIST .gz files (github.com/zalandoresearch/fashion-mnist, data/fashion/) into DIR and export ZOO_FASHION_MNIST_DIR=DIR" >&2; exit 1; fi

cards: $(STAMP)
	$(VENV)/bin/zoo cards

bench: $(STAMP)
	$(PY) benchmarks/load_time.py

clean:
	rm -rf $(VENV) zoo-run
