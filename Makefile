# Tessera developer workflow. `make run` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-runtime
NPM_STAMP := node_modules/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install run worker test test-tools chromium lint spec bundle bench clean

install: $(STAMP) $(NPM_STAMP)

# `make run` needs only the runtime; the test and lint tools come with `install`. Bytecode is
# compiled in parallel once, after pip: where PYTHONDONTWRITEBYTECODE is set (CI images) nothing
# else would cache it, and every `tessera` process would spend ~5 s compiling its imports.
COMPILE := $(BIN)/python -m compileall -q -j 0
# The first run's install says nothing unless it fails (then pip's errors are shown): warnings
# from pip and the build backend would bury the first admin's password.
PIP_QUIET := PYTHONWARNINGS=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
	$(BIN)/python -m pip install -qq
$(RUN_STAMP): pyproject.toml constraints.txt
	@echo "installing Tessera's runtime into $(VENV) (once)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP_QUIET) --upgrade pip
	@$(PIP_QUIET) --no-compile -c constraints.txt -e .
	@$(COMPILE) $(VENV)/lib >/dev/null
	@touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[dev]'
	$(COMPILE) $(VENV)/lib >/dev/null
	touch $(STAMP)

$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null)
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

# The first admin's credentials are printed last, once the server answers; the dependencies'
# deprecation warnings are not. Ctrl-C stops the server and the embedded PostgreSQL with it.
run: $(RUN_STAMP)
	@PYTHONWARNINGS=ignore $(BIN)/tessera migrate
	@PYTHONWARNINGS=ignore $(BIN)/tessera serve --host $(HOST) --port $(PORT) \
		--first-admin admin@example.com

worker: $(RUN_STAMP)
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

test: install lint test-tools
	$(COMPILE) tessera handlers models workers >/dev/null
	$(BIN)/python -m pytest

# What the tests need beyond pyproject.toml: Debian's Chromium for the browser tests, and
# helm-sdkpy (the Helm 4 library, for `helm lint`), which declares Python 3.12 but runs on 3.11.
test-tools: chromium $(VENV)/.helm-sdkpy

chromium:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium is missing and installing it needs root: the browser tests will be skipped"; fi

$(VENV)/.helm-sdkpy: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps --ignore-requires-python -c constraints.txt helm-sdkpy
	touch $@

# wrk comes from Debian's packages (installing it needs root); each wrk run is time-bounded.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=300 wrk)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/webhooks.py --events 2000
	$(BIN)/python bench/files.py --mb 50

clean:
	rm -rf $(VENV) node_modules .data .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
