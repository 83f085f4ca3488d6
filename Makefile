# The README's commands. `make book` installs everything into .venv and builds the
# HTML book, executing every chapter; `make test` runs pytest --nbval.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: book test twins benchmarks clean

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

book: $(BIN)/.installed
	$(BIN)/jupyter-book build . --all -W -n --keep-going

test: $(BIN)/.installed
	$(BIN)/python -m pytest --nbval

twins: $(BIN)/.installed
	$(BIN)/python scripts/make_twins.py

benchmarks: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_cartpole.py

clean:
	rm -rf _build
