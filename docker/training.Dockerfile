# Training image: the command line a GPU pod runs (`python -m include.training.train`).
# Build from the repository root:
#   docker build -f docker/training.Dockerfile --build-arg GIT_COMMIT=$(git rev-parse HEAD) -t REGISTRY/churn-training:TAG .
FROM python:3.11.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG GIT_COMMIT=unknown

RUN apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 trainer

WORKDIR /opt/project
# CUDA build of torch first (its own index), then only what the training command imports
# (the `training` dependency group) at the lock's versions: no Airflow, GX, Evidently or test tools
COPY pyproject.toml requirements.txt /tmp/deps/
RUN pip install --no-cache-dir "pip==26.3" \
    && pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}" \
    && pip install --no-cache-dir --group /tmp/deps/pyproject.toml:training -c /tmp/deps/requirements.txt \
    && rm -r /tmp/deps

COPY include/ include/
ENV PYTHONPATH=/opt/project \
    MLOPS_PROFILE=kubernetes \
    MLOPS_GIT_COMMIT=${GIT_COMMIT} \
    PYTHONUNBUFFERED=1
USER 10001
ENTRYPOINT ["python", "-m", "include.training.train"]
