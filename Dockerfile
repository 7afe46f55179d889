# visiontrain's inference side on the CPU: predict, serve, stream and drift with onnxruntime, no torch.
#
# Build (from the repository root; the base install of pyproject.toml, which has no torch, ~10x smaller than
# Dockerfile.cuda's training image):
#   docker build -t visiontrain:serve .
#
# Serve an exported model (port 8000; the bearer token from the environment, never from the command line):
#   docker run --rm -p 8000:8000 -e VISIONTRAIN_SERVE_TOKEN \
#       -v "$PWD/outputs/hymenoptera/runs/<time>:/models:ro" \
#       visiontrain:serve serve model=/models/model.onnx host=0.0.0.0
#   curl http://localhost:8000/health
#
# Score a Kafka topic (processes with one group= share its partitions; Prometheus metrics on 9108):
#   docker run --rm -v "$PWD/model:/models:ro" visiontrain:serve stream model=/models/model.onnx \
#       source=kafka://broker:9092/images group=scorers output=kafka://broker:9092/scores \
#       metrics_port=9108 metrics_host=0.0.0.0
#
# Batch predictions and drift: `... visiontrain:serve predict model=... input=...`, `... drift ...`.
# On Kubernetes: deploy/kubernetes/ (this image serves and streams; the retrain CronJob runs visiontrain:cuda).
# Training, or serving on an NVIDIA GPU: Dockerfile.cuda (visiontrain:cuda, visiontrain:serve-gpu).
#
# Checked without Docker by `python scripts/check_dockerfile.py --dockerfile Dockerfile` (hadolint with
# .hadolint.yaml, then the pip install steps below replayed in a fresh python3.11 venv, and `visiontrain --help`).
#
# The image runs as user `visiontrain` (uid 1000); run dirs go to /app/outputs, caches to /app/cache. With a
# read-only root file system (Kubernetes readOnlyRootFilesystem) mount writable volumes on /tmp, /app/outputs
# and /app/cache, as deploy/kubernetes/ does.
FROM python:3.11.14-slim-trixie

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# A non-root user, and the folders a run writes to; writable by any uid so `docker run --user ...` works too.
RUN useradd --create-home --uid 1000 --user-group --shell /bin/bash visiontrain \
    && mkdir -p /app/outputs /app/cache \
    && chown visiontrain:visiontrain /app/outputs /app/cache \
    && chmod 0777 /app/outputs /app/cache

ENV VIRTUAL_ENV=/opt/venv \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
RUN python3.11 -m venv "$VIRTUAL_ENV"

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml or constraints.txt change.
# The package itself is a stub here (an empty module, no configs) so that pip resolves exactly what the real
# install below needs; that install then finds every dependency in place. The base install only: no extras,
# so no torch (tests/test_container.py replays it and checks that torch cannot be imported).
COPY pyproject.toml constraints.txt ./
RUN mkdir -p src/visiontrain conf \
    && touch README.md src/visiontrain/__init__.py \
    && pip install --no-cache-dir -c constraints.txt . \
    && pip uninstall --yes visiontrain \
    && rm -rf src conf README.md

COPY README.md ./
COPY conf ./conf
COPY src ./src
RUN pip install --no-cache-dir -c constraints.txt .

ENV VISIONTRAIN_OUTPUT_DIR=/app/outputs \
    VISIONTRAIN_CACHE_DIR=/app/cache/visiontrain \
    XDG_CACHE_HOME=/app/cache \
    MPLCONFIGDIR=/tmp/matplotlib
VOLUME ["/app/outputs"]
EXPOSE 8000

# numeric, so that runtimes enforcing non-root (Kubernetes runAsNonRoot) can check it: the `visiontrain` user
USER 1000

# No HEALTHCHECK: the image also runs `stream`, `predict` and `drift`, which listen on no port 8000 (a check
# on /health would mark them unhealthy). Orchestrators probe the service themselves: deploy/kubernetes/ has
# httpGet readiness and liveness probes on GET /health, port 8000 (open without the token); with plain Docker:
#   --health-cmd 'python -c "import urllib.request as u; u.urlopen(\"http://localhost:8000/health\")"'
ENTRYPOINT ["visiontrain"]
CMD ["--help"]
