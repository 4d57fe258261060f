# Every target sets up what it needs: a .venv at the project root with the pinned stack.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The main job on the zero-setup dataset: train the CNN in PyTorch and in Keras, export
# every format in fp32 and int8, validate all 12 artifacts on their runtimes, report.
run: $(STAMP)
	$(VENV)/bin/edgecnn pipeline --framework both --dataset digits --int8 --out runs/pipeline-digits --force

# The test suite. MNIST tests read $$EDGECNN_DATA_DIR (default ../shared/data). Two
# workers, each test file on one (the ssh tests count the device's working folders);
# TEST_WORKERS=0 runs them in this process, one at a time.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/train.py
	$(VENV)/bin/python benchmarks/export.py
	$(VENV)/bin/python benchmarks/harness.py
	$(VENV)/bin/python benchmarks/numpy_runtime.py
	$(VENV)/bin/python benchmarks/explain.py
	$(VENV)/bin/python benchmarks/torch_runtimes.py

clean:
	rm -rf $(VENV) runs artifacts
