# Every target installs what it needs into the current Python environment (use a venv if you like).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# torch and torchvision are pinned together: an unpinned torch may pull a build whose torchvision does not import.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test bench

install:
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e ".[dev,dashboard]" $(TORCH_PINS)

demo: install
	$(PYTHON) -m monai_ilm demo --output_dir demo_output

test: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) benchmarks/step_overhead.py
