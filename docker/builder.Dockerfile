# The builder worker image: a Celery worker on the `builds` queue that drives a Docker engine
# (Docker-in-Docker in the Helm chart, via DOCKER_HOST) and pushes to SPACEYARD_REGISTRY.
# Build from the repository root:
#   docker build -f docker/builder.Dockerfile -t spaceyard/builder:0.1.0 .
# Air-gapped (no registry to pull python:3.11-slim from), on the debootstrap-made base:
#   docker build -f docker/builder.Dockerfile --build-arg BASE_IMAGE=spaceyard/base:py3.11 \
#     -t spaceyard/builder:0.1.0 .
# Behind a TLS-inspecting proxy: put its CA (or a whole bundle) in docker/extra-ca/*.crt first, or pass one small
# PEM as --build-arg EXTRA_CA_CERT="$(cat proxy-ca.pem)" (the kernel caps one build arg at 128 KiB, less than
# a full bundle). A private index: --build-arg PIP_INDEX=https://pypi.internal/simple
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# PEM text of one extra CA to trust (proxies, private mirrors); empty = none.
ARG EXTRA_CA_CERT=""
# Python package index; empty = PyPI.
ARG PIP_INDEX=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PATH=/opt/spaceyard/bin:$PATH

# Layers from least to most often changed. Everything up to the dependency layer is the same in
# controlplane.Dockerfile and builder.Dockerfile (keep it so), so the second image reuses the first one's pip
# install from the build cache; the code comes last, so an edit rebuilds in seconds without the network.
COPY docker/extra-ca/ /usr/local/share/ca-certificates/spaceyard/
RUN set -eux; \
    if [ -n "$EXTRA_CA_CERT" ]; then \
      printf '%s\n' "$EXTRA_CA_CERT" > /usr/local/share/ca-certificates/spaceyard/build-arg.crt; \
    fi; \
    if ! command -v update-ca-certificates >/dev/null; then \
      apt-get update; \
      apt-get install -y --no-install-recommends ca-certificates; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    update-ca-certificates; \
    python3 -m venv /opt/spaceyard

WORKDIR /src
# The dependencies alone: a stub of each package lets pip resolve pyproject.toml; the stub is uninstalled again.
# setuptools stays, so the code layer builds without an isolated (downloaded) build environment.
COPY pyproject.toml /src/
RUN set -eux; \
    mkdir controlplane builder; \
    touch controlplane/__init__.py builder/__init__.py; \
    pip install --cert /etc/ssl/certs/ca-certificates.crt ${PIP_INDEX:+--index-url "$PIP_INDEX"} \
      "setuptools>=68" /src; \
    pip uninstall -y spaceyard; \
    rm -rf /src/controlplane /src/builder /src/build /src/*.egg-info

# git: fetch the commit to build. socat: the Helm chart's registry forwarder (localhost:NodePort).
# debootstrap: makes the Python base image where no registry is reachable
# (SPACEYARD_BASE_IMAGE_SOURCE=debootstrap; needs the worker to run as root).
RUN set -eux; \
    if ! command -v git >/dev/null || ! command -v socat >/dev/null || ! command -v debootstrap >/dev/null; then \
      apt-get update; \
      apt-get install -y --no-install-recommends git socat debootstrap; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    groupadd --system --gid 10001 spaceyard; \
    useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/spaceyard spaceyard

# SDK helpers copied into every SDK base image; not part of the Python package.
COPY runtime-images /opt/spaceyard/runtime-images
ENV SPACEYARD_RUNTIME_IMAGES_DIR=/opt/spaceyard/runtime-images
COPY controlplane /src/controlplane
COPY builder /src/builder
RUN pip install --no-deps --no-build-isolation /src

# The Docker socket the chart shares is owned by group 10001 (dockerd --group=10001).
USER 10001:10001
WORKDIR /home/spaceyard
CMD ["celery", "-A", "builder.celery_app", "worker", "-Q", "builds", "--loglevel=INFO"]
