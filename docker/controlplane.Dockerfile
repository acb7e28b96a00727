# The control plane image: `spaceyard serve` (API, dashboard, git smart-HTTP, router) and, in the Helm
# chart's DaemonSet, `spaceyard gpu-agent`. Build from the repository root:
#   docker build -f docker/controlplane.Dockerfile -t spaceyard/controlplane:0.1.0 .
# Air-gapped (no registry to pull python:3.11-slim from), on the debootstrap-made base:
#   docker build -f docker/controlplane.Dockerfile --build-arg BASE_IMAGE=spaceyard/base:py3.11 \
#     -t spaceyard/controlplane:0.1.0 .
# Behind a TLS-inspecting proxy or a private index:
#   --build-arg EXTRA_CA_CERT="$(cat /etc/ssl/certs/ca-certificates.crt)" --build-arg PIP_INDEX=https://pypi.internal/simple
# The base needs python3 with venv and Debian's apt (or git already installed).
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

# git: the control plane serves Space repos through `git http-backend`.
RUN set -eux; \
    if [ -n "$EXTRA_CA_CERT" ]; then \
      mkdir -p /usr/local/share/ca-certificates; \
      printf '%s\n' "$EXTRA_CA_CERT" > /usr/local/share/ca-certificates/spaceyard-extra.crt; \
      update-ca-certificates; \
    fi; \
    if ! command -v git >/dev/null; then \
      apt-get update; \
      apt-get install -y --no-install-recommends git ca-certificates; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv /opt/spaceyard; \
    groupadd --system --gid 10001 spaceyard; \
    useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home spaceyard; \
    mkdir -p /data; \
    chown spaceyard:spaceyard /data

WORKDIR /src
COPY pyproject.toml /src/
COPY controlplane /src/controlplane
COPY builder /src/builder
RUN set -eux; \
    /opt/spaceyard/bin/pip install --cert /etc/ssl/certs/ca-certificates.crt \
      ${PIP_INDEX:+--index-url "$PIP_INDEX"} .

USER 10001:10001
WORKDIR /data
ENV SPACEYARD_DATA_DIR=/data \
    SPACEYARD_HOST=0.0.0.0 \
    SPACEYARD_PORT=8000
EXPOSE 8000
CMD ["spaceyard", "serve"]
