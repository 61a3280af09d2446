# The few verbs people type. Every target sets up what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit test-integration test-e2e lint bench bench-backtest bench-freshness bench-scale backtest-docs clean airflow stop chromium

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the pinned stack and the retrainer package

demo: install  ## replay Bikeshare 2011 through the real DAGs (Airflow + MLflow on SQLite)
	$(PY) scripts/demo.py

test: install chromium  ## the whole suite: unit, DAG integrity, integration, e2e (real scheduler + browser)
	$(PY) -m pytest -q

test-unit: install
	$(PY) -m pytest -q -m "not integration and not e2e"

test-integration: install
	$(PY) -m pytest -q -m integration

test-e2e: install chromium  ## the real Airflow components on loopback, and the Retraining view in Chromium
	$(PY) -m pytest -q -m e2e

lint: install
	$(PY) -m ruff check include dags tests scripts plugins benchmarks && $(PY) -m ruff format --check include dags tests scripts plugins benchmarks

bench: bench-backtest bench-freshness  ## every benchmark; each prints its time and the ratio to a baseline measured in the same run

bench-backtest: install  ## backtest speed: 130 weekly batches vs an every_batch-only replay (~20 s)
	PYTHONPATH=include $(PY) benchmarks/backtest_speed.py

backtest-docs: install  ## re-run the backtests whose tables and plots are in docs/backtest/
	$(PY) -m retrainer.cli backtest include/models/bikeshare.yaml --data bikeshare --no-progress --json docs/backtest/bikeshare.json --plot docs/backtest/bikeshare.png | tee docs/backtest/bikeshare.txt
	$(PY) -m retrainer.cli backtest include/models/rainfall.yaml --data rainfall --no-progress --json docs/backtest/rainfall.json --plot docs/backtest/rainfall.png | tee docs/backtest/rainfall.txt

# Airflow 3 (api-server, scheduler, dag-processor, triggerer; LocalExecutor on SQLite) and an MLflow server,
# all on 127.0.0.1, state in .airflow/. Ctrl-C or `make stop` stops exactly the processes it started.
AIRFLOW_PORT ?= 8080
MLFLOW_PORT ?= 5000
airflow: install  ## start Airflow + MLflow on loopback with the Retraining view (prints URLs and login)
	$(PY) scripts/airflow_stack.py start --state .airflow --port $(AIRFLOW_PORT) --mlflow-port $(MLFLOW_PORT)

stop:  ## stop what `make airflow` started (by recorded process group, never by name)
	$(PY) scripts/airflow_stack.py stop --state .airflow

bench-scale: install  ## 1M-row batch monitor, retrain on a long archive, policy-state read; ratios vs same-run baselines (~8 min)
	$(PY) benchmarks/scale.py

bench-freshness: install  ## freshness under the real scheduler: landing -> decision, landing -> new champion (~8 min)
	$(PY) benchmarks/freshness.py

# Debian's Chromium for the browser test (needs root for apt-get; skipped with a message otherwise)
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)); \
	  else echo "chromium missing and not root: the browser test will be skipped (apt-get install -y chromium)"; fi; }

clean:  ## remove generated state (not the venv)
	rm -rf .demo .test-artifacts .airflow data mlflow.db mlartifacts
