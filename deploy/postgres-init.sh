#!/bin/sh
# Roles and databases of the production profile on one Postgres server: `airflow` (metadata DB and
# Celery results), `mlflow` (tracking + registry) and `mlflow_auth` (MLflow users). Run once on an empty
# server: by the postgres image (docker-entrypoint-initdb.d) and by the native twin (psql over its socket).
set -eu
: "${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD}" "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v mlflow_pw="$MLFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
SQL
