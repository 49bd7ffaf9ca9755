# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install, train a small German->English attention LSTM, translate, print BLEU
#   make test   - create .venv, install, run ruff and the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/ruff check transduce tests benchmarks scripts
	$(BIN)/ruff format --check transduce tests benchmarks scripts
	# two workers share two cores: OpenMP threads that spin while waiting starve the other
	# worker's threads (a tiny training went from 22 s alone to 500 s beside another one)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/pytest -q -n 2 --durations=10

lint: $(STAMP)
	$(BIN)/ruff check transduce tests benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff format transduce tests benchmarks scripts
	$(BIN)/ruff check --fix transduce tests benchmarks scripts

clean:
	rm -rf $(VENV) runs/demo .pytest_cache .ruff_cache
