# syntax=docker/dockerfile:1
# Triton with Ladder's model repository baked in (the chart's triton.modelRepository.source=image). First
# write the gpu flavour into model_repository/ (weights are generated, not committed), then build:
#   ladder export --flavour gpu
#   docker buildx build -f deploy/triton.Dockerfile --platform linux/amd64,linux/arm64 \
#     -t ghcr.io/ladder-router/ladder-triton:0.1.0 .
# The gpu flavour serves the encoder and head on Triton's own onnxruntime backend (TensorRT accelerated), so
# no onnxruntime-gpu is installed; the one python-backend model, `tokenizer` (for the `router_text`
# ensemble), needs the `tokenizers` package. The gateway itself only calls `router`.
ARG TRITON_TAG=25.01
FROM nvcr.io/nvidia/tritonserver:${TRITON_TAG}-py3
ENV PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1
RUN pip install "tokenizers>=0.19"
COPY model_repository /models
RUN test -f /models/encoder/1/model.onnx -o -f /models/encoder/1/model.plan \
 || { echo "model_repository/encoder/1 has no weights: run 'ladder export --flavour gpu' first" >&2; exit 1; } \
 && test -f /models/head/1/model.onnx \
 && test -f /models/tokenizer/1/tokenizer.json \
 && test -f /models/tokenizer/1/model.py
EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=explicit", "--load-model=router", "--load-model=router_text", "--strict-readiness=true"]
