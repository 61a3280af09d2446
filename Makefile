# The few verbs people type. Every target sets up what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit test-integration lint bench clean

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the pinned stack and the retrainer package

demo: install  ## replay Bikeshare 2011 through the real DAGs (Airflow + MLflow on SQLite)
	$(PY) scripts/demo.py

test: install  ## the whole suite: unit, DAG integrity, integration with real dag.test() runs
	$(PY) -m pytest -q

test-unit: install
	$(PY) -m pytest -q -m "not integration"

test-integration: install
	$(PY) -m pytest -q -m integration

lint: install
	$(PY) -m ruff check include dags tests scripts && $(PY) -m ruff format --check include dags tests scripts

clean:  ## remove generated state (not the venv)
	rm -rf .demo .test-artifacts data mlflow.db mlartifacts
