# The proxy image of the Helm chart's proxy StatefulSet (docs/router.md, "On Kubernetes"): Debian's HAProxy 2.6 (with
# Lua, which the config uses to drop platform Set-Cookie headers) on the debootstrap-made base, so it builds where no
# public registry is reachable. Its files (haproxy.cfg, empty maps) are written at pod start by an init container
# in the control plane's image (`python -m controlplane.proxy.kube`); the routes come from the control plane through
# the runtime API. From the repository root, with nothing in the context but this file:
#   docker build -t spaceyard/proxy:0.1.0 - < docker/proxy.Dockerfile
# With a registry: --build-arg BASE_IMAGE=debian:bookworm-slim
ARG BASE_IMAGE=spaceyard/base:py3.11
FROM ${BASE_IMAGE}

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends haproxy; \
    rm -rf /var/lib/apt/lists/*; \
    haproxy -vv | grep -q 'Built with Lua'

# The chart runs it as uid 10001 (non-root: it binds 8080, the runtime API on 9999, peers on 9998, readiness on 8081).
USER 10001
CMD ["haproxy", "-db", "-f", "/var/lib/spaceyard-proxy/haproxy.cfg"]
