# floodgate — run `make help` for the targets.

GO        ?= go
FUZZTIME  ?= 15s
BENCHTIME ?= 2s
STATICCHECK_VERSION ?= v0.8.2

.DEFAULT_GOAL := help
.PHONY: help test lint fuzz bench build tools

help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

test: ## Run every test with the race detector (PostgreSQL tests need FLOODGATE_TEST_POSTGRES).
	$(GO) test -race -count=1 -timeout 25m ./...

lint: ## go vet, gofmt and staticcheck.
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# FUZZ lists package:target for every decoder floodgate exposes.
FUZZ := ./internal/ingest/:FuzzDecodeDonation ./internal/httpapi/:FuzzCampaignRequests \
	./internal/stripe/:FuzzWebhookPayload ./internal/stripe/:FuzzSignatureHeader ./internal/config/:FuzzParseFile \
	./internal/sandbox/:FuzzParseForm ./internal/sandbox/:FuzzHandlers ./internal/sandbox/:FuzzJournalReplay

fuzz: ## Run each fuzz target for FUZZTIME (default 15s).
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh $(FUZZ)

bench: ## Go benchmarks, then floodgate side by side with the ceiling and the naive design (bench/results/).
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...
	$(GO) run ./bench/compare --out bench/results

build: ## Build bin/floodgate.
	$(GO) build -o bin/floodgate ./cmd/floodgate
