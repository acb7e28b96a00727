"""Extra CA certificates for builds behind TLS-inspecting proxies (the way Cog keeps cacert.go apart).

The extra bundle is appended to the image's own Debian bundle, so it may hold only the proxy's CA or
a whole bundle; pip, requests and OpenSSL are pointed at the merged file, during the build and at
run time (apps downloading models sit behind the same proxy).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from builder.settings import BuilderSettings

CONTEXT_NAME = "spaceyard-extra-ca.crt"
EXTRA_PATH = "/usr/local/share/spaceyard/extra-ca.crt"
BUNDLE_PATH = "/usr/local/share/spaceyard/ca-bundle.crt"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def ca_layer(settings: BuilderSettings) -> list[str]:
    """Dockerfile lines installing the extra bundle; [] when none is configured."""
    if settings.build_ca_bundle is None:
        return []
    return [
        f"COPY {CONTEXT_NAME} {EXTRA_PATH}",
        f"RUN {{ cat {SYSTEM_BUNDLE} 2>/dev/null || true; cat {EXTRA_PATH}; }} > {BUNDLE_PATH}",
        f"ENV PIP_CERT={BUNDLE_PATH} REQUESTS_CA_BUNDLE={BUNDLE_PATH} SSL_CERT_FILE={BUNDLE_PATH}",
    ]


def add_to_context(settings: BuilderSettings, context_dir: Path) -> None:
    """Copy the extra bundle into a build context, where ca_layer's COPY finds it."""
    if settings.build_ca_bundle is not None:
        shutil.copyfile(settings.build_ca_bundle, context_dir / CONTEXT_NAME)
