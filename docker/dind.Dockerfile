# The builder's Docker-in-Docker engine (images.dind, builder.engine: dind) where docker:27-dind cannot be pulled:
# Debian's Docker Engine (docker.io, 20.10) on the debootstrap-made base. The chart runs it privileged with
# `dockerd --host=unix:///run/dind/docker.sock --group=10001` and /var/lib/docker on its own volume (overlay2 needs
# that volume on a non-overlay filesystem, as an emptyDir on ext4/xfs is). With nothing in the context but this file:
#   docker build -t registry.internal/spaceyard/dind:20.10 - < docker/dind.Dockerfile
ARG BASE_IMAGE=spaceyard/base:py3.11
FROM ${BASE_IMAGE}

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends docker.io iptables ca-certificates; \
    rm -rf /var/lib/apt/lists/*

VOLUME /var/lib/docker
CMD ["dockerd"]
