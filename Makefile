# Cellar: `make up` starts everything with the embedded defaults; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
PROTO_SRC := $(wildcard protos/cellar/guestagent/v1/*.proto)
PROTO_OUT := cellar/guestagent/v1/agent_pb2.py

.PHONY: up test lint unit integration integration-production chaos chaos-slice docker images \
	venv protos test-deps clean

up: docker venv images
	$(BIN)/cellar serve

test: lint unit integration integration-production chaos-slice

venv: $(STAMPS)/venv $(PROTO_OUT)

$(STAMPS)/venv: setup.cfg pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

protos: $(PROTO_OUT)

$(PROTO_OUT): $(PROTO_SRC) $(STAMPS)/venv
	$(BIN)/python -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. \
		--grpc_python_out=. $(PROTO_SRC)

docker:
	@bash scripts/ensure-docker.sh

images: docker venv
	$(BIN)/python images/build.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

test-deps:
	@bash scripts/test-deps.sh

unit: venv test-deps
	$(BIN)/pytest -q -n 2 tests/unit

integration: docker venv images test-deps
	$(BIN)/pytest -q -m integration tests/integration

integration-production: docker venv images test-deps
	CELLAR_TEST_PROFILE=production $(BIN)/pytest -q -m integration tests/integration

# The crash suite: the worker is killed before and during each step of each workflow.
chaos: docker venv images test-deps
	$(BIN)/python -m tests.chaos

# One kill per workflow, and the provisions again against real PostgreSQL and RabbitMQ.
chaos-slice: docker venv images test-deps
	$(BIN)/python -m tests.chaos --slice
	$(BIN)/python -m tests.chaos --slice --profile production --only provision

clean:
	rm -rf $(VENV) $(STAMPS)
