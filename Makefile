# Every target installs what it needs into the current Python environment (use a venv if you like), or into the
# one of PYTHON=path/to/venv/bin/python.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# the versions the suite was tested with (setup.cfg keeps the supported ranges)
CONSTRAINTS := -c constraints.txt
# torch and torchvision are pinned together: an unpinned torch may pull a build whose torchvision does not import.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install browser demo test test-fast bench

install:
	$(PIP) install -q $(CONSTRAINTS) $(TORCH_PINS)
	$(PIP) install -q $(CONSTRAINTS) -e ".[dev,dashboard]" $(TORCH_PINS)

# Chromium for the dashboard's browser test; where it cannot be installed, that test skips and says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver >/dev/null) || echo "chromium could not be installed: the browser test will skip"; \
	else echo "no apt-get or not root: the browser test will skip"; fi

demo: install
	$(PYTHON) -m monai_ilm demo --output_dir demo_output

# Two pytest workers, whole files each (module fixtures such as the wheel build run once), one thread per process
# (tests and the bundle runs they start): on 2 cores 5.9 min against 10.7 min serial with torch's two threads.
PYTEST := OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n 2 --dist loadfile --durations=10

test: install browser
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTEST)

# the everyday loop: no install, no end-to-end runs (tests marked slow; make test and CI run them)
test-fast:
	$(PYTEST) -m "not slow"

bench: install
	$(PYTHON) benchmarks/step_overhead.py
