# The marketing suite. `make run` and `make test` are the whole set-up on a fresh machine
# with Python 3.11+ and make (Node.js/npm adds the buf lint and the Node.js client test).
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
NODE_DIR := clients/node
BUF    := $(NODE_DIR)/node_modules/.bin/buf
PYTEST_ARGS ?=

.PHONY: help install run test test-fast protos protos-check lint-protos lint bench bench-quick soak demo image deploy-check migrate clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

# npm install rather than npm ci: npm ci refuses a lock file listing buf's optional
# per-platform packages for other platforms (a known npm problem); the lock still pins versions.
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.installed ## Create .venv with the locked dependencies (and Node tools if npm exists)
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(NODE_DIR)/node_modules/.installed; else echo "npm not found: buf lint and the Node.js client test will be skipped"; fi

run: install ## Migrate and start all four services with embedded SQLite and Redis
	$(PY) -m services.run

migrate: install ## Apply every service's database migrations
	$(PY) -m services.migrate

protos: $(VENV)/.installed ## Regenerate marketing/ (Python code) from protos/
	$(PY) tools/gen_protos.py

protos-check: $(VENV)/.installed ## Fail if the generated code is stale
	$(PY) tools/gen_protos.py --check

lint-protos: install ## buf lint the contracts (googleapis protos from the installed package)
	@if [ -x $(BUF) ]; then \
	  $(PY) tools/gen_protos.py --image build/protos.binpb && \
	  cd protos && ../$(BUF) lint ../build/protos.binpb --config buf.yaml && echo "buf lint: clean"; \
	else echo "buf not installed (no npm): skipping buf lint"; fi

test: install protos-check lint-protos ## Run the whole test suite (PostgreSQL/Redis tests when reachable)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install ## Run the tests without the slow marker
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: install ## Run every benchmark (full sizes); results in bench-results/
	$(PY) -m bench

bench-quick: install ## Run every benchmark at the quick size (under 2 minutes)
	$(PY) -m bench --quick

soak: install ## Run all four services under mixed traffic and report errors, latency, memory
	$(PY) -m bench.soak

demo: install ## The whole loop on the CDNOW purchase log, through the public API
	$(PY) -m services.cli.demo

image: ## Build the container image (needs a Docker engine): docker build -t marketing-suite .
	docker build -t marketing-suite:$$(git rev-parse --short HEAD) -t marketing-suite:latest .

deploy-check: install ## Render and validate every kustomize overlay
	$(PY) -m pytest tests/deploy -q

clean: ## Remove local state (var/) and build outputs
	rm -rf var build bench-results .pytest_cache
