# Switchboard: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint proto protoset check-proto bench clean setup node-deps browser-deps

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## run: set up everything and start Switchboard with the demo organisation
run: setup
	$(BIN)/switchboard serve --demo

## test: set up everything and run the whole test suite (the shim reaching the core in
## process, as `switchboard serve` does), then the shim suite again over real gRPC
test: setup node-deps browser-deps
	$(BIN)/python scripts/gen_proto.py --check
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest tests/shim --transport grpc -q --ignore=tests/shim/test_schemathesis.py

## node-deps: the independent Node clients used by interop tests (skipped without npm)
node-deps:
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/node && (test -d node_modules || npm ci --silent --no-audit --no-fund \
			|| echo "npm ci failed: Node interop tests will be skipped"); \
	else echo "npm not found: Node interop tests will be skipped"; fi

## browser-deps: playwright-core for the browser tests (drives Debian's chromium; no browser download)
browser-deps:
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/browser && (test -d node_modules || npm ci --silent --no-audit --no-fund \
			|| echo "npm ci failed: browser tests will be skipped"); \
	else echo "npm not found: browser tests will be skipped"; fi

## lint: buf lint, ruff, mypy
lint: setup
	$(BIN)/buf lint
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/mypy

## proto: regenerate the switchboard.v1 Python package and the ghz protoset
proto: setup
	$(BIN)/python scripts/gen_proto.py

## bench: the benchmark table (ratios against bare baselines measured in the same run)
bench: setup
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
