# The builder worker image: a Celery worker on the `builds` queue that drives a Docker engine
# (Docker-in-Docker in the Helm chart, via DOCKER_HOST) and pushes to SPACEYARD_REGISTRY.
# Build from the repository root:
#   docker build -f docker/builder.Dockerfile -t spaceyard/builder:0.1.0 .
# Air-gapped (no registry to pull python:3.11-slim from), on the debootstrap-made base:
#   docker build -f docker/builder.Dockerfile --build-arg BASE_IMAGE=spaceyard/base:py3.11 \
#     -t spaceyard/builder:0.1.0 .
# Behind a TLS-inspecting proxy or a private index:
#   --build-arg EXTRA_CA_CERT="$(cat /etc/ssl/certs/ca-certificates.crt)" --build-arg PIP_INDEX=https://pypi.internal/simple
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# PEM text of extra CAs to trust (proxies, private mirrors); empty = none.
ARG EXTRA_CA_CERT=""
# Python package index; empty = PyPI.
ARG PIP_INDEX=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PATH=/opt/spaceyard/bin:$PATH

# git: fetch the commit to build. socat: the Helm chart's registry forwarder (localhost:NodePort).
# debootstrap: makes the Python base image where no registry is reachable
# (SPACEYARD_BASE_IMAGE_SOURCE=debootstrap; needs the worker to run as root).
RUN set -eux; \
    if [ -n "$EXTRA_CA_CERT" ]; then \
      mkdir -p /usr/local/share/ca-certificates; \
      printf '%s\n' "$EXTRA_CA_CERT" > /usr/local/share/ca-certificates/spaceyard-extra.crt; \
      update-ca-certificates; \
    fi; \
    if ! command -v git >/dev/null || ! command -v socat >/dev/null || ! command -v debootstrap >/dev/null; then \
      apt-get update; \
      apt-get install -y --no-install-recommends git socat debootstrap ca-certificates; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv /opt/spaceyard; \
    groupadd --system --gid 10001 spaceyard; \
    useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/spaceyard spaceyard

WORKDIR /src
COPY pyproject.toml /src/
COPY controlplane /src/controlplane
COPY builder /src/builder
RUN set -eux; \
    /opt/spaceyard/bin/pip install --cert /etc/ssl/certs/ca-certificates.crt \
      ${PIP_INDEX:+--index-url "$PIP_INDEX"} .
# SDK helpers copied into every SDK base image; not part of the Python package.
COPY runtime-images /opt/spaceyard/runtime-images
ENV SPACEYARD_RUNTIME_IMAGES_DIR=/opt/spaceyard/runtime-images

# The Docker socket the chart shares is owned by group 10001 (dockerd --group=10001).
USER 10001:10001
WORKDIR /home/spaceyard
CMD ["celery", "-A", "builder.celery_app", "worker", "-Q", "builds", "--loglevel=INFO"]
