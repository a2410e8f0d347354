# Serving image: the model server (`python -m include.serving`), pinned to a model version at deploy time.
#   docker build -f docker/serving.Dockerfile -t REGISTRY/churn-serving:TAG .
FROM python:3.11.11-slim-bookworm

ARG GIT_COMMIT=unknown
RUN useradd --create-home --uid 10001 server
WORKDIR /opt/project
COPY pyproject.toml requirements.txt /tmp/deps/
# CPU torch is enough to serve the MLP; then only what the server imports (the `serving`
# dependency group), at the lock's versions: no Airflow, Great Expectations, Evidently, DVC or
# test tools (a 1.5 GB environment instead of 2.6 GB)
RUN pip install --no-cache-dir "pip==26.3" \
    && pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir --group /tmp/deps/pyproject.toml:serving -c /tmp/deps/requirements.txt \
    && rm -r /tmp/deps
COPY include/ include/
ENV PYTHONPATH=/opt/project MLOPS_PROFILE=kubernetes MLOPS_GIT_COMMIT=${GIT_COMMIT} PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "include.serving", "--host", "0.0.0.0", "--allow-remote", "--port", "8080"]
