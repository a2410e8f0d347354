# Serving image: the model server (`python -m include.serving`), pinned to a model version at deploy time.
#   docker build -f docker/serving.Dockerfile -t REGISTRY/churn-serving:TAG .
FROM python:3.11.11-slim-bookworm

ARG GIT_COMMIT=unknown
RUN useradd --create-home --uid 10001 server
WORKDIR /opt/project
COPY requirements.txt /tmp/requirements.txt
# CPU torch is enough to serve the MLP
RUN pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
    && grep -vE '^(torch|apache-airflow.*)==' /tmp/requirements.txt > /tmp/requirements-serving.txt \
    && pip install --no-cache-dir -r /tmp/requirements-serving.txt \
    && rm /tmp/requirements*.txt
COPY include/ include/
ENV PYTHONPATH=/opt/project MLOPS_PROFILE=kubernetes MLOPS_GIT_COMMIT=${GIT_COMMIT} PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "include.serving", "--host", "0.0.0.0", "--allow-remote", "--port", "8080"]
