# syntax=docker/dockerfile:1
# The Perilflow platform image: Apache Airflow 3.3.2 with the pinned providers and Perilflow
# (REST API plugin and cluster policy, registered through entry points; the operators), and the
# DAGs baked in. Every Airflow component of the Helm chart runs it.
#
#   docker build -f docker/platform.Dockerfile -t perilflow/platform:0.1.0 .    # from the repo root
FROM apache/airflow:3.3.2-python3.11

USER airflow
WORKDIR /opt/perilflow/src

# The exact dependency set the tests run with: requirements.txt under the frozen constraints.txt.
# It holds apache-airflow==3.3.2 itself, so the image's Airflow is kept, not upgraded.
COPY --chown=airflow:0 requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt

# Perilflow itself; its dependencies are all installed above.
COPY --chown=airflow:0 setup.cfg pyproject.toml README.md ./
COPY --chown=airflow:0 perilflow/ perilflow/
COPY --chown=airflow:0 kernel/ kernel/
COPY --chown=airflow:0 operators/ operators/
COPY --chown=airflow:0 plugins/ plugins/
RUN pip install --no-cache-dir --no-deps . \
 && python -c "from importlib.metadata import entry_points as ep; \
assert ep(group='airflow.plugins', name='perilflow'), 'plugin entry point missing'; \
assert ep(group='airflow.policy', name='perilflow'), 'policy entry point missing'" \
 && perilflow --help > /dev/null

# DAGs baked into the image: every component sees the same DAG code as the image tag says.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

WORKDIR /opt/airflow
# ENTRYPOINT and CMD stay the base image's (/entrypoint, run by the Airflow chart with its own args).
