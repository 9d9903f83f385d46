# The commands a newcomer needs. Each one sets up the locked environment first when it is missing.
.DEFAULT_GOAL := help
SHELL := /bin/bash

UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python

# Prefect keeps its local state (the temporary server's database, `make schedule`'s server database) inside the project.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
# The pipeline's own default store; $MLFLOW_TRACKING_URI wins when set.
TRACKING_URI := $(or $(MLFLOW_TRACKING_URI),sqlite:///$(CURDIR)/mlflow.db)

.PHONY: help setup run schedule deploy status lint format test test-fast test-slow test-ui chromium ui serve-model benchmark docs docs-serve schema clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

# --compile-bytecode: every dependency is compiled to .pyc once, here. Without it each run compiles the ~5000
# modules it imports from source whenever .pyc files cannot be written (PYTHONDONTWRITEBYTECODE=1, read-only
# installs): about 10 s of every run's start-up (docs/benchmarks.md).
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra dev --python python3 --compile-bytecode
	touch $@

setup: $(VENV)/.synced ## create .venv from uv.lock (torch, prefect, mlflow, dvc, ...)

run: setup ## run the whole pipeline on the built-in data (the tasks of params.yaml: global.tasks, else all)
	$(VENV)/bin/attnflow run

schedule: setup ## run the pipeline on params.yaml's global.schedule (local Prefect server + UI on :4200)
	$(VENV)/bin/attnflow schedule serve

deploy: setup ## put the scheduled deployments on work pool POOL of the server at PREFECT_API_URL (docs/how-to/work-pools.md)
	$(VENV)/bin/attnflow schedule deploy --pool "$(POOL)"

status: setup ## list the scheduled deployments, their next run and last runs
	$(VENV)/bin/attnflow schedule status

lint: setup ## check style and common bugs with ruff (the config is in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup ## rewrite the code in the project's format (ruff format) and fix what ruff can
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# A worker per core (at most 4: each holds torch, MLflow and Prefect), torch on one thread in each (two threads a
# worker on busy cores are far slower); tests/conftest.py hands the workers whole modules.
test: setup ## run the test suite (slow tests excluded): under 10 minutes on 2 cores
	OMP_NUM_THREADS=1 $(PY) -m pytest -n auto --maxprocesses 4 --dist loadscope -m "not slow"

test-fast: setup ## run the fast tier: no Prefect server, no pipeline run, no command line, no fuzzing (about a minute)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n auto -m "not slow and not integration and not fuzz"  # a worker per core

test-slow: setup ## run only the slow tests (sweep, served model, kills and concurrent runs, browser: needs `make chromium`)
	$(PY) -m pytest -m slow

benchmark: setup ## quality on a real dataset: make benchmark DATASET=ag_news [ARGS="--set train.epochs=2"]
	$(PY) benchmarks/real_data.py $(DATASET) $(ARGS)

test-ui: setup ## run the browser test of the MLflow UI (needs `make chromium` first)
	$(PY) -m pytest -m slow tests/test_ui.py

chromium: ## install Chromium with apt-get for the browser test (Debian/Ubuntu; uses sudo when not root)
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update && $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y --no-install-recommends chromium

ui: setup ## open the MLflow UI on this project's store at http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri "$(TRACKING_URI)" --host 127.0.0.1 --port 5000

TASK ?= digit-classification
serve-model: setup ## serve TASK's champion (VARIANT=compact: the compressed one) on 127.0.0.1:5001; docs/how-to/deploy.md
	$(VENV)/bin/attnflow model serve --task "$(TASK)" $(if $(VARIANT),--variant "$(VARIANT)") $(ARGS)

# The site's reference pages (command line, params keys, exit codes) are written from the code at every build by
# docs/hooks/reference.py; --strict makes a broken link, a missing anchor or a page left out of nav fail the build.
docs: setup ## build the documentation site into site/ (mkdocs --strict; the reference pages generated from the code)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: setup ## preview the documentation site on http://127.0.0.1:8000, rebuilt on every change
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

schema: setup ## rewrite docs/reference/params.schema.json from the params models (tests/test_docs.py checks it is current)
	$(PY) docs/hooks/reference.py

clean: ## remove runs, outputs and local state (keeps data/ and the DVC cache)
	rm -rf outputs mlflow.db mlartifacts .prefect .attnflow-tmp site
