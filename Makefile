# The README's commands. `make book` installs everything into .venv and builds the
# HTML book, executing every chapter; `make test` runs pytest --nbval.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: book test test-quick lab twins benchmarks clean

$(BIN)/.installed: requirements.txt pyproject.toml scripts/jupyterlab-overrides.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp scripts/jupyterlab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

book: $(BIN)/.installed
	$(BIN)/jupyter-book build . --all -W -n --keep-going

test: $(BIN)/.installed
	$(BIN)/python -m pytest --nbval

test-quick: $(BIN)/.installed
	PGKIT_BUDGET=quick $(BIN)/python -m pytest --nbval

lab: $(BIN)/.installed
	$(BIN)/jupyter lab chapters/

twins: $(BIN)/.installed
	$(BIN)/python scripts/make_twins.py

benchmarks: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_cartpole.py
	$(BIN)/python benchmarks/bench_chapters.py quick default
	$(BIN)/python benchmarks/bench_ppo.py
	$(BIN)/python benchmarks/bench_vtrace.py
	$(BIN)/python benchmarks/bench_bpo.py

clean:
	rm -rf _build
