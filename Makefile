# totpd — every entry point a developer or CI needs. `make run` and `make test` work on a
# fresh machine with Python 3.11+ (and Go for the grpcurl black-box test).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := $(CURDIR)/.tools/bin
GRPCURL_VERSION := v1.9.3
GHZ_VERSION := v0.120.0
GEN_DIR := clients/python/totpd/v1
PROTO := protos/totpd/v1/totp_service.proto
# The buf.validate rules' own schema (vendored from build.buf:protovalidate), which the
# API proto imports: every language compiles it along with the API.
VALIDATE_PROTO := protos/buf/validate/validate.proto
GENERATED := $(GEN_DIR)/totp_service_pb2.py $(GEN_DIR)/totp_service_pb2_grpc.py \
	clients/python/buf/validate/validate_pb2.py

.PHONY: help run test unit lint typecheck check proto-check docs docs-check generate tools lock clean \
	clients clients-go clients-node clients-java bench soak

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: $(VENV)/.installed $(GENERATED) ## Run the service (embedded Redis unless TOTPD_REDIS_URL is set).
	$(PY) -m totpd

test: check $(TOOLS)/grpcurl $(TOOLS)/ghz clients ## Lint, check the contract, build the clients, run every test.
	PATH="$(TOOLS):$$PATH" $(PY) -m pytest

unit: $(VENV)/.installed $(GENERATED) ## Only the unit tests.
	$(PY) -m pytest tests/unit

check: lint typecheck proto-check docs-check ## Lint, type-check, and check the proto contract and its docs.

lint: $(VENV)/.installed $(GENERATED)
	$(VENV)/bin/ruff check server tests clients/python scripts bench soak
	$(VENV)/bin/ruff format --check server tests clients/python scripts bench soak

# buf lint (STANDARD + COMMENTS), buf format (fails on a diff), and buf breaking against
# every committed version of protos/ (see scripts/check-breaking.sh).
proto-check: $(VENV)/.installed
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf format --diff --exit-code
	BUF=$(VENV)/bin/buf scripts/check-breaking.sh

docs: $(VENV)/.installed ## Regenerate docs/api.md from the proto comments.
	$(PY) scripts/gen_api_docs.py > docs/api.md

# docs/api.md is committed (people read it in the repository), so CI fails on drift.
docs-check: $(VENV)/.installed
	$(PY) scripts/gen_api_docs.py | diff -u docs/api.md - || \
		{ echo "docs/api.md is stale: run 'make docs'"; exit 1; }

typecheck: $(VENV)/.installed $(GENERATED)
	$(VENV)/bin/mypy

# Every language's stubs are generated at build time from protos/ and never committed
# (each output directory is git-ignored), so none can drift from the proto: Python with
# grpcio-tools' protoc + mypy-protobuf, Go with buf.gen.yaml and the pinned protoc-gen-go(-grpc), Node with
# buf + protoc-gen-es from its lock file, Java with protobuf-maven-plugin.
generate: $(GENERATED) ## Generate every language's stubs (Python, Go, Node, Java) from the proto.
	clients/go/generate.sh
	cd clients/node && { test -d node_modules || npm ci --no-audit --no-fund --loglevel=error; } \
		&& npm run --silent generate
	cd clients/java && mvn -B -ntp -q -Dstyle.color=never generate-sources

# The Python stubs alone: all that `make run` needs.
$(GENERATED) &: $(PROTO) $(VALIDATE_PROTO) $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -Iprotos \
		--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy \
		--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc \
		--python_out=clients/python --mypy_out=clients/python \
		--grpc_python_out=clients/python --mypy_grpc_out=clients/python $(PROTO) $(VALIDATE_PROTO)
	touch $(GENERATED)

$(VENV)/.installed: requirements/dev.lock pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/dev.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e clients/python -e .
	touch $@

# The Go, Node and Java clients: stubs generated from protos/ at build time, dependencies
# from their lock files. Their live tests run in tests/e2e/test_clients.py.
clients: clients-go clients-node clients-java ## Build and statically check every client.

clients-go: $(VENV)/.installed
	clients/go/generate.sh
	cd clients/go && go vet ./... && test -z "$$(gofmt -l .)"

clients-node:
	cd clients/node && npm ci --no-audit --no-fund --loglevel=error && npm run typecheck

clients-java:
	cd clients/java && mvn -B -ntp -q -Dstyle.color=never test-compile

bench: $(VENV)/.installed $(GENERATED) $(TOOLS)/ghz ## Load benchmark (not in `test`): a table, and bench/results/*.json, *.png.
	$(PY) bench/run.py $(BENCH_ARGS)

soak: $(VENV)/.installed $(GENERATED) ## Soak test (not in `test`): mixed load for minutes; errors, RSS and Redis memory over time.
	$(PY) soak/run.py $(SOAK_ARGS)

$(TOOLS)/ghz:
	GOBIN=$(TOOLS) GOFLAGS=-mod=mod go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)

tools: $(TOOLS)/grpcurl ## Install the pinned grpcurl into .tools/bin.

$(TOOLS)/grpcurl:
	GOBIN=$(TOOLS) GOFLAGS=-mod=mod go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

lock: ## Re-resolve the pinned dependency locks from pyproject.toml.
	$(PY) -m pip install --quiet uv==0.13.8
	$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes -o requirements/runtime.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements/dev.lock

clean: ## Remove the venv, tools, generated code and local data.
	rm -rf $(VENV) .tools var $(GEN_DIR)/*_pb2*.py $(GEN_DIR)/*_pb2*.pyi .pytest_cache .mypy_cache .ruff_cache
