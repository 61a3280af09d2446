# The few verbs people type. Every target sets up what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TUNE_SHOW ?= pda3_ctl2_cd3_age8,pda3_ctl2p2_cd3_age8,pda3_ctl2p2_cd3,pda3_ctl2_cd3,pd_ctl2_cd3,pd30_ctl1_cd3,pdc3_ctl2_cd3,pd_cu05h3_cd3,pd_ctl2_budget,relative25_cd2
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
# devtools/ (the dev stack, the dag.test() harness, the demo) runs from the checkout, outside the installed package
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: install demo docs config-docs test test-unit test-integration test-e2e test-deep lint typecheck bench bench-backtest bench-threads bench-freshness bench-scale bench-scaleout bench-policy-state backtest-results backtest-docs tune-triggers clean airflow airflow-prod stop env prod-deps chromium

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the pinned stack and the retrainer package

demo: install  ## replay Bikeshare 2011 through the real DAGs (Airflow + MLflow on SQLite)
	$(PY) -m devtools.demo

docs: install  ## build the documentation site into site/ (mkdocs --strict, warnings shown: a broken link or missing page fails)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

config-docs: install  ## rewrite docs/configuration/reference.md and the JSON Schema from the config models
	$(PY) -m retrainer.config.reference --write

test: install lint typecheck docs chromium prod-deps  ## lint, types and the docs build first (fail early), then the whole suite: unit, DAG integrity, integration, e2e (real scheduler + browser)
	$(PY) -m pytest -q

test-unit: install
	$(PY) -m pytest -q -m "not integration and not e2e"

test-integration: install
	$(PY) -m pytest -q -m integration

# the randomized stateful test (tests/integration/test_stateful.py) with 20x the examples `make test` runs
STATEFUL_EXAMPLES ?= 60
test-deep: install  ## the randomized stateful test, 20x the examples of `make test` (STATEFUL_EXAMPLES=60)
	RETRAINER_STATEFUL_EXAMPLES=$(STATEFUL_EXAMPLES) $(PY) -m pytest -q tests/integration/test_stateful.py

test-e2e: install chromium prod-deps  ## the real Airflow components on loopback, and the Retraining view in Chromium
	$(PY) -m pytest -q -m e2e

lint: install  ## ruff check, ruff format --check and the import layers (lint-imports; a few seconds)
	$(VENV)/bin/lint-imports && $(PY) -m ruff check include dags tests devtools plugins benchmarks && $(PY) -m ruff format --check include dags tests devtools plugins benchmarks

typecheck: install  ## mypy on the package (settings in pyproject.toml)
	$(PY) -m mypy

bench: bench-backtest bench-threads bench-freshness bench-scaleout bench-policy-state  ## every benchmark; each prints its time and the ratio to a baseline measured in the same run

bench-policy-state: install  ## reading the policy state after 100 vs 3,000 decisions: head pointer vs search (~2 min)
	$(PY) benchmarks/policy_state.py

bench-backtest: install  ## backtest speed: 130 weekly batches vs an every_batch-only replay (~20 s)
	$(PY) benchmarks/backtest_speed.py

bench-threads: install  ## one thread vs the libraries' defaults: backtest, retrain fit, scoring 1M rows; idle and on busy cores (~3 min)
	$(PY) benchmarks/threads.py

BT := benchmarks/backtest-results
backtest-results: install  ## re-run the backtests in benchmarks/backtest-results/ (reports, JSON, plots; the docs' worked example is copied to docs/backtest/)
	$(PY) -m retrainer.cli backtest include/models/bikeshare.yaml --data bikeshare --no-progress --json $(BT)/bikeshare.json --plot $(BT)/bikeshare.png | tee $(BT)/bikeshare.txt
	$(PY) -m retrainer.cli backtest include/models/rainfall.yaml --data rainfall --no-progress --json $(BT)/rainfall.json --plot $(BT)/rainfall.png | tee $(BT)/rainfall.txt
	$(PY) -m retrainer.cli backtest docs/backtest/configs/co2.yaml --data co2 --no-progress --json $(BT)/co2.json --plot $(BT)/co2.png | tee $(BT)/co2.txt
	$(PY) -m retrainer.cli backtest docs/backtest/configs/trump_approval.yaml --data trump_approval --no-progress --json $(BT)/trump_approval.json --plot $(BT)/trump_approval.png | tee $(BT)/trump_approval.txt
	$(PY) -m retrainer.cli backtest docs/backtest/configs/nyse.yaml --data nyse --no-progress --json $(BT)/nyse.json --plot $(BT)/nyse.png | tee $(BT)/nyse.txt
	$(PY) -m retrainer.cli backtest docs/backtest/configs/sea.yaml --data sea --no-progress --json $(BT)/sea.json --plot $(BT)/sea.png | tee $(BT)/sea.txt
	$(PY) -m retrainer.cli backtest docs/backtest/configs/sea.yaml --data sea --label-delay 2 --no-progress --json $(BT)/sea.d2.json | tee $(BT)/sea.d2.txt
	$(PY) -m retrainer.cli backtest docs/backtest/configs/agrawal.yaml --data agrawal --no-progress --json $(BT)/agrawal.json --plot $(BT)/agrawal.png | tee $(BT)/agrawal.txt
	$(PY) -m retrainer.cli backtest docs/backtest/configs/agrawal.yaml --data agrawal --label-delay 2 --no-progress --json $(BT)/agrawal.d2.json | tee $(BT)/agrawal.d2.txt
	$(PY) -m retrainer.cli backtest docs/backtest/configs/friedman_lea.yaml --data friedman_lea --no-progress --json $(BT)/friedman_lea.json --plot $(BT)/friedman_lea.png | tee $(BT)/friedman_lea.txt
	$(PY) -m retrainer.cli backtest docs/backtest/configs/friedman_lea.yaml --data friedman_lea --label-delay 2 --no-progress --json $(BT)/friedman_lea.d2.json | tee $(BT)/friedman_lea.d2.txt
	$(PY) -m retrainer.cli backtest docs/backtest/configs/friedman_gra.yaml --data friedman_gra --no-progress --json $(BT)/friedman_gra.json --plot $(BT)/friedman_gra.png | tee $(BT)/friedman_gra.txt
	$(PY) -m retrainer.cli backtest docs/backtest/configs/friedman_gra.yaml --data friedman_gra --label-delay 2 --no-progress --json $(BT)/friedman_gra.d2.json | tee $(BT)/friedman_gra.d2.txt
	$(PY) -m retrainer.cli backtest docs/backtest/configs/friedman_gsg.yaml --data friedman_gsg --no-progress --json $(BT)/friedman_gsg.json --plot $(BT)/friedman_gsg.png | tee $(BT)/friedman_gsg.txt
	$(PY) -m retrainer.cli backtest docs/backtest/configs/friedman_gsg.yaml --data friedman_gsg --label-delay 2 --no-progress --json $(BT)/friedman_gsg.d2.json | tee $(BT)/friedman_gsg.d2.txt
	cp $(BT)/bikeshare.png $(BT)/bikeshare.txt docs/backtest/

backtest-docs: backtest-results  ## the old name of backtest-results

tune-triggers: install  ## re-run the trigger tuning (cached in .tune-cache/) and write benchmarks/tuning.md (the tuning history, for developers)
	$(PY) -m devtools.tune_triggers --write benchmarks/tuning.md --write-variants $(TUNE_SHOW) --chosen pda3_ctl2_cd3_age8

tune-docs: install  ## `retrainer tune` on every tuning stream at label delays 0 and 2 (reports in benchmarks/results/tune/, reused unless FRESH=--fresh); writes the table of docs/backtest/tune.md (~30 min)
	$(PY) benchmarks/tune_streams.py $(FRESH)


# Airflow 3 (api-server, scheduler, dag-processor, triggerer; LocalExecutor on SQLite) and an MLflow server,
# all on 127.0.0.1, state in .airflow/. Ctrl-C or `make stop` stops exactly the processes it started.
AIRFLOW_PORT ?= 8080
MLFLOW_PORT ?= 5000
airflow: install  ## start Airflow + MLflow on loopback with the Retraining view (prints URLs and login)
	$(PY) -m devtools.stack start --state .airflow --port $(AIRFLOW_PORT) --mlflow-port $(MLFLOW_PORT)

# The production twin: Debian Postgres + Redis, Airflow on the CeleryExecutor with WORKERS Celery workers and
# the FAB auth manager, an MLflow server on Postgres with proxied artifacts and basic auth; all on 127.0.0.1,
# state in .airflow-prod/ (Postgres data in /tmp/retrainer-pg-*). Settings from deploy/*.env, like compose.
PROD_STATE ?= .airflow-prod
WORKERS ?= 2
airflow-prod: install prod-deps  ## start the production twin on loopback (prints URLs and logins)
	$(PY) -m devtools.stack start --prod --state $(PROD_STATE) --port $(AIRFLOW_PORT) --mlflow-port $(MLFLOW_PORT) --workers $(WORKERS)

stop:  ## stop what `make airflow` / `make airflow-prod` started (by recorded process group, never by name)
	$(PY) -m devtools.stack stop --state .airflow
	$(PY) -m devtools.stack stop --state $(PROD_STATE)

env: install  ## write .env for docker compose with fresh random secrets (refuses to overwrite one)
	$(PY) -m devtools.deploy env --out .env

# Debian's PostgreSQL and Redis for the production twin (needs root for apt-get, as in CI)
prod-deps:
	@{ ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null; } || { \
	  if [ "$$(id -u)" = 0 ]; then (DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql redis-server || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql redis-server)); \
	  else echo "postgresql/redis-server missing and not root: apt-get install -y postgresql redis-server"; exit 1; fi; }

bench-scaleout: install prod-deps  ## 4 models x 10 batches through the production twin with 1 then 2 Celery workers
	$(PY) benchmarks/scaleout.py

bench-scale: install  ## 1M-row batch monitor, retrain on a long archive, policy-state read; ratios vs same-run baselines (~8 min)
	$(PY) benchmarks/scale.py

bench-freshness: install  ## freshness under the real scheduler: landing -> decision, landing -> new champion, event vs sensor arrival (~16 min)
	$(PY) benchmarks/freshness.py

# Debian's Chromium for the browser test (needs root for apt-get; skipped with a message otherwise)
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)); \
	  else echo "chromium missing and not root: the browser test will be skipped (apt-get install -y chromium)"; fi; }

clean:  ## remove generated state (not the venv)
	rm -rf .demo .test-artifacts .airflow .airflow-prod data mlflow.db mlartifacts site
