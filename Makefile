# Keybrake — the entry point. `make run` to serve locally, `make test` to run every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

STATE      := .keybrake
PG_BIN     ?= /usr/lib/postgresql/15/bin
DEV_PG     := $(STATE)/pg
DEV_PORT   ?= 24320
TEST_PG    := $(STATE)/test-pg
TEST_PORT  ?= 24329
KEYBRAKE_PORT ?= 8080
DEV_DB_URL := postgres://postgres@127.0.0.1:$(DEV_PORT)/keybrake
TEST_DB_URL := postgres://postgres@127.0.0.1:$(TEST_PORT)/keybrake_test
MASTER_KEYS_FILE := $(STATE)/master.keys

.PHONY: help deps build run bench bench-latency bench-noisy soak test test-swift test-contract test-e2e test-browser dev-db dev-key test-db stop clean ha ha-down bench-ha

help:
	@echo "make run    set up everything (packages, local Postgres under $(STATE)/, dev master key, migrations) and serve on 127.0.0.1:$(KEYBRAKE_PORT)"
	@echo "make test   set up a throwaway Postgres and run the whole test suite"
	@echo "make bench  benchmarks: proxy overhead and cap throughput vs direct and nginx, then the real-latency rows (results in Benchmarks/results/)"
	@echo "make bench-noisy  tenant B alone and beside an admin-read flood and a past-quota flood (release build)"
	@echo "make bench-ha  the HA rows: metered and GET direct / to the leader / via HAProxy / via PgBouncer, and the failover time"
	@echo "make bench-latency  only the rows at real vendor latency (200 ms upstream over TLS+HTTP/2 and HTTP/1.1; 100-4,000 agents)"
	@echo "make soak   the money invariant and reading-rules properties, 10 minutes each (SOAK_SECONDS=...)"
	@echo "make ha     a local HA Postgres (etcd, two Patroni nodes with a sync standby, HAProxy, PgBouncer) on 127.0.0.1:24370-24379; make ha-down stops it"
	@echo "make stop   stop the local Postgres clusters"

deps:
	@scripts/install-deps.sh

build: deps
	swift build --product keybrake

# A development master key, only when none is configured.
dev-key: build
	@if [ -z "$$KEYBRAKE_MASTER_KEYS" ] && [ -z "$$KEYBRAKE_MASTER_KEYS_FILE" ] && [ ! -s $(MASTER_KEYS_FILE) ]; then \
	  mkdir -p $(STATE); (umask 077; .build/debug/keybrake generate-master-key --id dev1 > $(MASTER_KEYS_FILE)); \
	  echo "make run: generated a development master key in $(MASTER_KEYS_FILE) (set KEYBRAKE_MASTER_KEYS to use your own)"; fi

dev-db: deps
	@scripts/postgres.sh start $(DEV_PG) $(DEV_PORT)
	@scripts/postgres.sh createdb $(DEV_PORT) keybrake

run: build dev-db dev-key
	@export DATABASE_URL="$${DATABASE_URL:-$(DEV_DB_URL)}"; \
	if [ -z "$$KEYBRAKE_MASTER_KEYS" ]; then export KEYBRAKE_MASTER_KEYS_FILE="$${KEYBRAKE_MASTER_KEYS_FILE:-$(MASTER_KEYS_FILE)}"; fi; \
	.build/debug/keybrake migrate && \
	scripts/quickstart.sh "http://127.0.0.1:$(KEYBRAKE_PORT)" && \
	exec .build/debug/keybrake serve --port $(KEYBRAKE_PORT) --no-migrate

test-db: deps
	@scripts/postgres.sh start $(TEST_PG) $(TEST_PORT)
	@scripts/postgres.sh createdb $(TEST_PORT) keybrake_test --fresh

# The whole suite: Swift unit + HTTP tests on real Postgres, the OpenAPI contract run (schemathesis),
# the official SDKs end to end (two replicas, localstripe, fake Twilio/Resend), then the dashboard in headless Chromium.
test: test-swift test-contract test-e2e test-browser

test-browser: deps
	timeout 900 scripts/browser.sh

test-e2e: deps
	scripts/e2e.sh

test-swift: test-db
	scripts/check-imports.sh
	swift build --build-tests
	KEYBRAKE_TEST_DATABASE_URL=$(TEST_DB_URL) timeout 900 swift test --skip-build

test-contract: deps
	python3 -c "import yaml; from openapi_spec_validator import validate; validate(yaml.safe_load(open('openapi.yaml')))" 2>/dev/null \
	  || (python3 -m pip install -q pyyaml openapi-spec-validator && python3 -c "import yaml; from openapi_spec_validator import validate; validate(yaml.safe_load(open('openapi.yaml')))")
	timeout 900 scripts/contract.sh

# The money invariant and reading-rules properties for longer (fresh seeds; KEYBRAKE_INVARIANT_SEED / KEYBRAKE_READING_SEED replay one).
SOAK_SECONDS ?= 600
soak: test-db
	swift build --build-tests
	KEYBRAKE_INVARIANT_SECONDS=$(SOAK_SECONDS) KEYBRAKE_TEST_DATABASE_URL=$(TEST_DB_URL) swift test --skip-build --filter ProxyInvariantTests
	KEYBRAKE_READING_SECONDS=$(SOAK_SECONDS) KEYBRAKE_TEST_DATABASE_URL=$(TEST_DB_URL) swift test --skip-build --filter ProxyReadingDifferentialTests

# Overhead and cap throughput vs a same-run baseline (direct and nginx); release build in .build-release/.
bench: deps
	Benchmarks/run.sh
	Benchmarks/latency.sh
	$(MAKE) bench-noisy

# Tenant B alone and beside the two floods of test_14 (issue 26), on a release build: prints B's p50/p99 and share.
bench-noisy: deps
	nice swift build -c release --product keybrake --scratch-path $(or $(BENCH_SCRATCH_PATH),.build-release)
	KEYBRAKE_BIN=$(abspath $(or $(BENCH_SCRATCH_PATH),.build-release))/release/keybrake scripts/e2e.sh -k noisy -s

# docs/operations.md "What the HA path costs": the metered and GET rows direct, to the leader, through HAProxy and through PgBouncer,
# then SIGKILL of the leader → first 2xx (median of 5).
bench-ha: deps
	Benchmarks/ha.sh

# DESIGN §12 "At real vendor latency" alone (BENCH_QUICK=1 for 5 s rows).
bench-latency: deps
	Benchmarks/latency.sh

# docs/operations.md "High availability": scripts/ha.sh up|down|status|kill-primary|failover.
ha:
	@scripts/ha.sh up

ha-down:
	@scripts/ha.sh down

stop:
	@scripts/postgres.sh stop $(DEV_PG)
	@scripts/postgres.sh stop $(TEST_PG)
	@if [ -d $(STATE)/ha ]; then scripts/ha.sh down; fi

clean: stop
	rm -rf $(STATE) .build
