# Developer entry points; `make` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PYTEST_ARGS ?=
BENCH_ARGS ?=
# SECURITY=sasl_ssl: up, down, status, demo and test on the secured stack (docs/security.md)
SECURITY ?=
export SECURITY
# TOPOLOGY=clusters (or multi): up, down, status and demo with a Kafka cluster per region and MirrorMaker 2
# between them (docs/operations.md, "Multi-cluster topology")
TOPOLOGY ?=
export TOPOLOGY
# BROKERS=3: up, demo, test, reliability and bench on three Kafka brokers, topics with
# replication factor 3 and min.insync.replicas 2 (docs/operations.md, "Three brokers")
BROKERS ?=
export BROKERS
# EDGE=mqtt: up and demo with Mosquitto brokers as the IoT cores, the identities in them and the
# devices speaking MQTT through the edge bridges (docs/operations.md, "The device edge")
EDGE ?=
export EDGE
# WORKERS=2: make demo runs two workers per role, each role one consumer group
WORKERS ?= 1
export WORKERS

.DEFAULT_GOAL := help
.PHONY: help prereqs setup up down status test demo lint bench reliability clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

prereqs: ## check the system tools the stack needs (as root on Debian: install them)
	@scripts/prereqs.sh

setup: $(VENV)/.installed ## create .venv and install the project with its dev extras

$(VENV)/.installed: pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

up: prereqs $(if $(filter sasl_ssl,$(SECURITY))$(filter clusters multi,$(TOPOLOGY)),setup) ## start the local Kafka broker and Redis (.run/)
	scripts/stack.sh up

down: ## stop the stack up started, in its recorded mode; data and logs stay in .run/
	scripts/stack.sh down

status: ## show what runs (the recorded mode, unless SECURITY or TOPOLOGY is given)
	scripts/stack.sh status

test: prereqs ## all tests on a fresh stack (PYTEST_ARGS=... to select)
	scripts/test.sh $(PYTEST_ARGS)

demo: prereqs ## a global worker, one per configured region, and a simulated fleet (VEHICLES=1000)
	scripts/demo.sh

reliability: prereqs ## long reliability suite (RELIABILITY_VEHICLES=2000 ...), writes docs/reliability.md
	scripts/reliability.sh

lint: setup ## ruff check, the type checker (mypy; what it checks: pyproject.toml), the import layers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_structure.py

bench: prereqs setup up ## pipeline benchmark on the local stack (BENCH_ARGS=...)
	eval "$$(scripts/stack.sh env)" && $(VENV)/bin/python -m bench.pipeline_bench $(BENCH_ARGS)

clean: down ## stop the stack and remove .run/
	rm -rf .run
