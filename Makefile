# The few verbs people type. Every target sets up what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit test-integration lint bench backtest-docs clean

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
	$(PY) -m ruff check include dags tests scripts benchmarks && $(PY) -m ruff format --check include dags tests scripts benchmarks

bench: install  ## benchmarks: each prints its time and the ratio to a baseline measured in the same run
	PYTHONPATH=include $(PY) benchmarks/backtest_speed.py

backtest-docs: install  ## re-run the backtests whose tables and plots are in docs/backtest/
	$(PY) -m retrainer.cli backtest include/models/bikeshare.yaml --data bikeshare --no-progress --json docs/backtest/bikeshare.json --plot docs/backtest/bikeshare.png | tee docs/backtest/bikeshare.txt
	$(PY) -m retrainer.cli backtest include/models/rainfall.yaml --data rainfall --no-progress --json docs/backtest/rainfall.json --plot docs/backtest/rainfall.png | tee docs/backtest/rainfall.txt

clean:  ## remove generated state (not the venv)
	rm -rf .demo .test-artifacts data mlflow.db mlartifacts
