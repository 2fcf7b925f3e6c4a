# stagemesh — the commands a newcomer needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

SOURCES := $(shell find proto services cli gateway bench scripts docs/schema -type f \( -name '*.ts' -o -name '*.proto' -o -name '*.mjs' -o -name '*.json' \) -not -name '*.spec.ts' 2>/dev/null) buf.yaml buf.gen.yaml tsconfig.json tsconfig.build.json

.PHONY: help install build start test lint tools clean cluster cluster-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

node_modules/.package-lock.json: package.json package-lock.json
	npm install --no-audit --no-fund
	@touch $@

install: node_modules/.package-lock.json ## install npm dependencies (and build)

dist/.built: node_modules/.package-lock.json $(SOURCES)
	npm run build
	@touch $@

build: dist/.built ## generate contracts from proto/ and compile TypeScript into dist/

start: build ## start the embedded mesh: gRPC 127.0.0.1:50051, HTTP 127.0.0.1:8080
	node bin/stagemesh.js start

test: build ## run every test with coverage (fails below 90 % of lines)
	npx c8 mocha

cluster: build ## start the distributed profile on loopback: Consul, 2 schedulers, 2 coordinators, event-bus, compliance, metrics, 5 workers (logs in .cluster/)
	@test -x .tools/bin/consul || curl -sf "http://$${CONSUL_HTTP_ADDR:-127.0.0.1:8500}/v1/status/leader" >/dev/null || { echo "Consul is needed: run make tools first (or set CONSUL_HTTP_ADDR to a running agent)"; exit 1; }
	node bin/stagemesh.js cluster up

cluster-down: ## stop everything make cluster started
	node bin/stagemesh.js cluster down

lint: node_modules/.package-lock.json ## lint the contracts (buf lint) and type-check everything
	node scripts/generate.mjs --lint
	npx tsc --noEmit -p tsconfig.json

tools: ## build the pinned Go tools (consul, jaeger, ghz, grpcurl) into .tools/bin
	bash deploy/tools/install.sh

clean: ## remove build output, generated code and coverage (not .stagemesh data)
	rm -rf dist generated coverage

.PHONY: bench
bench: build ## measure throughput and latency on a fresh embedded mesh; prints JSON (never part of make test)
	node bin/stagemesh.js bench
