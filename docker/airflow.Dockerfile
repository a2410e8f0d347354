# Airflow image (scheduler, dag-processor, api-server, workers) with the project's lock and code.
#   docker build -f docker/airflow.Dockerfile -t REGISTRY/churn-airflow:TAG .
FROM apache/airflow:3.3.2-python3.11

ARG GIT_COMMIT=unknown
COPY --chown=airflow:root requirements.txt /tmp/requirements.txt
# Airflow's own packages are already in the base image at the same pins
RUN pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
    && grep -vE '^torch==' /tmp/requirements.txt > /tmp/requirements-airflow.txt \
    && pip install --no-cache-dir -r /tmp/requirements-airflow.txt \
    && rm /tmp/requirements*.txt
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
COPY --chown=airflow:root include/ /opt/airflow/include/
COPY --chown=airflow:root airflow_settings.yaml /opt/airflow/airflow_settings.yaml
ENV PYTHONPATH=/opt/airflow MLOPS_PROFILE=kubernetes MLOPS_GIT_COMMIT=${GIT_COMMIT}
