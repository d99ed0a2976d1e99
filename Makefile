# Tessera developer workflow. `make run` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install run worker test unit contract lint spec bundle bench clean

install: $(STAMP) $(NPM_STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

run: $(STAMP)
	$(BIN)/tessera migrate
	$(BIN)/tessera create-admin --email admin@example.com --if-no-users
	$(BIN)/tessera serve --host $(HOST) --port $(PORT)

worker: $(STAMP)
	$(BIN)/tessera worker

bundle: $(STAMP)
	$(BIN)/python scripts/bundle_spec.py

spec: $(STAMP)
	$(BIN)/python scripts/bundle_spec.py --check
	$(BIN)/openapi-spec-validator openapi/openapi.yaml

lint: install spec
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	npx --no-install spectral lint --fail-severity=warn openapi/openapi.yaml
	$(BIN)/python scripts/check_breaking.py

test: install lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) node_modules .data .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
