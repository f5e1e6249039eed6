# Patchfleet. Two commands on a fresh Debian/Ubuntu machine with Go: `make run`, `make test`.

SHELL := /bin/bash

MODULES := events db tools services/advisory-ingest services/planner services/executor services/inventory
SERVICES := advisory-ingest planner executor inventory

# Pinned tools, fetched through the Go module proxy.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
SQLC        := github.com/sqlc-dev/sqlc/cmd/sqlc@v1.31.1

GO_TEST_FLAGS ?= -race -count=1 -timeout 20m
TEST_LOG      := $(CURDIR)/.cache/test.log

.PHONY: run test e2e fuzz lint generate generate-check schemas build bench fmt help

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

run: ## run the whole system in one process (embedded NATS, local PostgreSQL, all services)
	go run ./tools/cmd/patchfleetd

test: ## run every module's tests with the race detector, against real PostgreSQL and JetStream
	@mkdir -p $(dir $(TEST_LOG)); : > $(TEST_LOG); status=0; \
	for m in $(MODULES); do \
		echo "== $$m"; \
		(cd $$m && go test $(GO_TEST_FLAGS) -v ./... 2>&1) | tee -a $(TEST_LOG) | grep -vE '^\s*(=== (RUN|PAUSE|CONT|NAME)|--- PASS)' ; \
		[ $${PIPESTATUS[0]} -eq 0 ] || status=1; \
	done; \
	tools/scripts/test-summary $(TEST_LOG); exit $$status

# Real-host tests (build tag e2e) as module:packages:tests — the tests that need root, real
# hosts, a browser or a NATS cluster.
E2E_PKGS := tools:./testfleet/...:. tools:./e2e/...:. tools:./console/...:E2E \
	services/inventory:./...:E2E services/executor:./...:E2E

e2e: ## real-host tests (root): disposable Debian hosts over real SSH, apt and dpkg
	tools/scripts/e2e-deps
	cd tools && go run ./cmd/testfleet prepare
	@mkdir -p $(dir $(TEST_LOG)); : > $(TEST_LOG).e2e; status=0; \
	for mp in $(E2E_PKGS); do \
		IFS=: read -r m p r <<< "$$mp"; echo "== $$m $$p (e2e)"; \
		(cd $$m && go test -tags e2e -count=1 -timeout 30m -run "$$r" -v $$p 2>&1) | tee -a $(TEST_LOG).e2e | grep -vE '^\s*(=== (RUN|PAUSE|CONT|NAME)|--- PASS)' ; \
		[ $${PIPESTATUS[0]} -eq 0 ] || status=1; \
	done; \
	tools/scripts/test-summary $(TEST_LOG).e2e; exit $$status

chaos: ## crash tests (root): 200 simulated hosts patched while services are killed -9, NATS and PostgreSQL restarted (CHAOS_SEED=n to replay); then a 3-node NATS cluster losing a node and an executor
	cd tools && go test -tags chaos -count=1 -timeout 10m -v -run '^TestChaos$$' ./chaos/ $(if $(CHAOS_SEED),-args -chaos.seed=$(CHAOS_SEED))
	cd tools && go test -tags 'e2e chaos' -count=1 -timeout 15m -v -run '^TestChaosCluster$$' ./e2e/

fuzz: ## run every fuzz target briefly (FUZZTIME=5s each)
	tools/scripts/fuzz-all $(MODULES)

lint: ## gofmt, go vet and staticcheck on every module
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do (cd $$m && go vet ./... && go run $(STATICCHECK) ./...) || exit 1; done

generate: schemas ## regenerate sqlc queries and the event JSON Schemas
	cd db && go run $(SQLC) generate

generate-check: generate ## fail when generated code is stale
	@git diff --exit-code -- db events/schema && test -z "$$(git status --porcelain -- db events/schema)" \
		|| { echo "generated code is stale: run make generate and commit"; exit 1; }

schemas: ## write events/schema/json from the event types
	cd events && go run ./cmd/schemas schema/json

build: ## build every binary into bin/
	@mkdir -p bin
	for s in $(SERVICES); do (cd services/$$s && go build -o ../../bin/$$s ./cmd/$$s) || exit 1; done
	cd tools && go build -o ../bin/ ./cmd/...

bench: ## measure every performance goal and compare with Ansible and parallel-ssh (root; BENCH_SHORT=1: under 10 minutes)
	tools/scripts/bench-deps
	cd tools && go run ./cmd/bench $(if $(BENCH_SHORT),-short) $(BENCH_FLAGS)

fmt: ## gofmt every module
	gofmt -w $(MODULES)
