"""Every control-plane setting, read from the environment (prefix SPACEYARD_). Documented in docs/settings.md."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACEYARD_", extra="ignore")
    _secret_from_file: str | None = PrivateAttr(default=None)

    data_dir: Path = Field(default=Path(".spaceyard"), description="Repos, SQLite file, private Redis, logs.")
    host: str = Field(default="127.0.0.1", description="Address the control plane listens on.")
    port: int = Field(default=8000, description="Port of the API, dashboard, git server and app router.")
    public_url: str | None = Field(default=None, description="Base URL users reach; default http://host:port.")
    apps_domain: str = Field(default="localhost", description="Apps answer at {owner}-{name}.{apps_domain}.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir.")
    redis_url: str | None = Field(default=None, description="Unset: `spaceyard up` starts a private Redis.")
    runtime: Literal["docker", "kubernetes"] = Field(
        default="docker", description="Where apps run: the local Docker engine, or Kubernetes node pools."
    )
    secret_key: str | None = Field(default=None, description="Signs sessions, encrypts secrets; default a file.")
    gpu_agent_token: str | None = Field(
        default=None,
        description="Token GPU agents post samples with (the chart sets it); unset: `spaceyard agent-token`'s.",
    )

    # Web surface (docs/security.md: the origins, credentials and headers)
    path_urls: bool | None = Field(
        default=None,
        description="Serve apps at /apps/{owner}/{name}/ too (the dashboard's origin); default on only while "
        "apps_domain is localhost (the single-host quickstart), off once a real apps domain is configured.",
    )
    secure_cookies: bool | None = Field(
        default=None, description="Mark the session cookie Secure; default on when public_url is https."
    )
    metrics_token: str | None = Field(
        default=None, description="Bearer token Prometheus scrapes /metrics with; admins' tokens work too."
    )
    max_api_body_bytes: int = Field(
        default=1024 * 1024, description="Largest JSON body of an /api call (commits and git have their own limits)."
    )

    # Data path (docs/router.md): a kept proxy in front, the control plane behind it
    proxy: Literal["haproxy", "none"] = Field(
        default="none",
        description="'haproxy': HAProxy (started by `spaceyard up`, on host:port) serves running public Spaces "
        "directly, its routes changed at run time without reloads; the control plane listens on loopback "
        "controlplane_port behind it and gets the rest. 'none' (the default for `serve` alone, and the Helm chart): "
        "the control plane listens on host:port and routes every app request itself.",
    )
    controlplane_port: int | None = Field(
        default=None, description="Loopback port of the control plane behind the proxy; default port + 1."
    )
    proxy_targets: str = Field(
        default="",
        description="Runtime APIs of the proxies the control plane pushes routes to: empty = the local HAProxy's "
        "socket (`spaceyard up`); a comma-separated list of `host:port` (or socket paths); or "
        "`kubernetes:NAMESPACE/SERVICE:PORT`, every address of that headless Service, followed as its replicas come "
        "and go (the Helm chart's proxy Deployment). Set: the control plane listens on host, not loopback.",
    )
    blocking_threads: int = Field(
        default=32, ge=4,
        description="Threads the control plane runs blocking database and engine calls in (one bounded pool; "
        "log streams have their own threads).",
    )
    proxy_activity_port: int | None = Field(
        default=None,
        description="Loopback UDP port the proxy logs the requests apps answered to (they keep Spaces awake); "
        "default port + 2.",
    )

    # Builds
    build_heartbeat_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a handed-out build may go without an event from its builder (none started it, or "
        "its worker or Redis died) before it is sent again: the bound on how long a fault delays a build.",
    )
    build_max_attempts: int = Field(default=2, description="Tries of one build when its worker is lost.")
    build_images_kept: int = Field(
        default=3,
        ge=1,
        description="Images of the last successful builds kept per Space for rollback; older ones are removed "
        "(never one an instance uses).",
    )
    max_push_bytes: int = Field(default=512 * 1024 * 1024, description="Largest accepted git push body.")
    max_file_bytes: int = Field(default=50 * 1024 * 1024, description="Largest file in an API commit.")
    max_commit_bytes: int = Field(default=200 * 1024 * 1024, description="Largest API commit.")
    max_repo_bytes: int = Field(
        default=1024 * 1024 * 1024,
        description="Largest Space git repo on disk; a push or API commit that would grow it past this is refused "
        "and leaves nothing behind (large files belong in Git LFS).",
    )
    max_lfs_object_bytes: int = Field(
        default=10 * 1024**3,
        description="Largest Git LFS object (git-lfs push, or a large file through the Hub API). LFS objects are "
        "stored once under data_dir/lfs and count toward no repo size limit.",
    )
    lfs_threshold_bytes: int = Field(
        default=10 * 1000 * 1000,
        description="Files above this size go through Git LFS when uploaded with the Hub API (preupload answers "
        "'lfs'; the Hub uses 10 MB). huggingface_hub 1.x and later would use Xet for 'lfs': for those clients only "
        "files over SPACEYARD_MAX_FILE_BYTES are answered 'lfs' (docs/hub-api.md).",
    )
    builds_in_flight: int = Field(
        default=2,
        ge=1,
        description="Builds handed to the builders at once; set it to the builders' total concurrency. The rest "
        "wait in Spaceyard's queue, taken round-robin across owners.",
    )

    # Linked Spaces and push webhooks (docs/webhooks.md)
    webhook_max_body_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        description="Largest push webhook payload; a larger one is a 413 before it is read whole.",
    )
    webhook_deliveries_kept: int = Field(
        default=20, ge=1, description="Webhook deliveries kept (and shown) per linked Space; older ones are deleted."
    )
    link_private_addresses: bool = Field(
        default=False,
        description="Let linked repository URLs name loopback, private, link-local (cloud metadata) and other "
        "non-public addresses; off, a Space owner cannot make Spaceyard fetch from the host's own services.",
    )

    # Runtime
    default_startup_timeout: float = Field(default=1800.0, description="Seconds an app may take to listen.")
    health_interval: float = Field(default=0.25, description="Seconds between readiness probes.")
    reconcile_interval: float = Field(default=30.0, description="Seconds between reconciler passes.")
    drain_timeout: float = Field(
        default=300.0,
        description="After a redeploy, the most seconds the old instance keeps serving the requests, streams and "
        "WebSockets open on it (and the client sessions pinned to it) before it is stopped; it stops earlier, once "
        "none is left.",
    )
    cpu_basic_sleep_seconds: int = Field(default=48 * 3600, description="Default sleep time on cpu-basic.")
    wake_timeout: float = Field(
        default=4.0,
        description="Seconds an API request waits for a waking or starting Space before a 503 with Retry-After "
        "(first byte within httpx's 5 s default timeout, which the Hub clients use).",
    )
    sleep_check_interval: float = Field(
        default=30.0, description="Seconds between idle checks (and flushes of last-request times to the DB)."
    )
    tiers_file: Path | None = Field(default=None, description="Operator tier/pool catalog (YAML).")
    local_cpu_capacity: int | None = Field(
        default=None,
        ge=0,
        description="docker runtime: Spaces on CPU tiers at once; default the catalog's CPU pool capacity.",
    )
    gpu_recording: Path | None = Field(
        default=None, description="docker runtime: take the host's GPUs from this NVML recording (demos, tests)."
    )
    local_space_memory_gb: float = Field(
        default=2.0,
        gt=0,
        description="docker runtime: GiB one Space on a CPU tier gets when its catalog entry sets no "
        "local_memory_gb (at most the tier's memory_gb); GPU tiers get their memory_gb (docs/tiers.md).",
    )
    local_reserved_memory_gb: float = Field(
        default=2.0,
        ge=0,
        description="docker runtime: GiB of host memory kept for the platform and builds; Spaces' memory limits "
        "together never exceed the rest (docs/tiers.md).",
    )
    local_reserved_cpus: float = Field(
        default=0.5,
        ge=0,
        description="docker runtime: CPUs no single Space may take; a Space's CPU cap is at most the host's CPUs "
        "minus this.",
    )
    docker_pids_limit: int = Field(
        default=512, ge=16, description="docker runtime: most processes and threads one Space container may hold."
    )
    docker_log_max_size: str = Field(
        default="10m", description="docker runtime: size at which a Space container's log file rotates (json-file)."
    )
    docker_log_max_file: int = Field(
        default=3, ge=1, description="docker runtime: rotated log files kept per Space container."
    )
    docker_sdk_allow_root: bool = Field(
        default=False,
        description="docker runtime: run containers as their image's USER (root included); off: as uid 1000, as "
        "on the Hub.",
    )

    # Single host: `spaceyard up` supervises its parts (docs/operations.md)
    restart_limit: int = Field(
        default=5,
        ge=0,
        description="Exits of one part (Redis, builder, proxy, control plane) within restart_window after which "
        "`spaceyard up` stops the platform and says which part failed; 0: restart forever.",
    )
    restart_window: float = Field(
        default=300.0, gt=0, description="Seconds over which restart_limit counts a part's exits."
    )
    log_max_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=1024,
        description="Size at which a log file in data_dir/logs (each part's output) is rotated.",
    )
    log_backups: int = Field(default=3, ge=1, description="Rotated files kept per log in data_dir/logs.")
    access_log: bool = Field(
        default=False,
        description="Log every app request the control plane proxies (one line each); API, dashboard and git "
        "requests are logged either way.",
    )

    # Kubernetes runtime (the Helm chart sets these)
    kubeconfig: str | None = Field(
        default=None, description="kubeconfig file; unset: in-cluster credentials, else $KUBECONFIG."
    )
    spaces_namespace: str = Field(default="spaceyard-spaces", description="Namespace the Spaces run in.")
    ingress_class: str | None = Field(default=None, description="IngressClass of per-Space Ingresses.")
    space_ingress: bool = Field(
        default=False,
        description="One Ingress per Space; off when a wildcard Ingress sends app hosts to the router (the chart).",
    )
    apps_tls_secret: str | None = Field(default=None, description="TLS Secret of per-Space Ingresses.")
    image_pull_secret: str | None = Field(default=None, description="Secret nodes pull Space images with.")
    k8s_request_ratio: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Space pods request this share of their tier's CPU and memory (limits stay the tier's): 1.0 "
        "reserves it all (Guaranteed QoS); lower packs more Spaces on nodes smaller than the tiers.",
    )
    registry: str | None = Field(
        default=None, description="Registry the builder pushes to; the kubernetes runtime needs one."
    )

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def internal_port(self) -> int:
        """Where the control plane listens: behind the proxy on its own port, else on the public one."""
        if self.proxy == "none":
            return self.port
        return self.controlplane_port or self.port + 1

    @property
    def activity_port(self) -> int:
        return self.proxy_activity_port or self.port + 2

    @property
    def path_urls_enabled(self) -> bool:
        return self.path_urls if self.path_urls is not None else self.apps_domain.strip(".").lower() == "localhost"

    @property
    def secure_cookies_enabled(self) -> bool:
        return self.secure_cookies if self.secure_cookies is not None else self.base_url.startswith("https://")

    @property
    def instance(self) -> str:
        """Names this installation's containers and images, so two installations can share one engine."""
        import hashlib

        return hashlib.sha1(str(self.data_dir.resolve()).encode()).hexdigest()[:10]

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'spaceyard.db').resolve()}"

    def secret_key_value(self) -> str:
        if self.secret_key:
            return self.secret_key
        if self._secret_from_file is not None:
            return self._secret_from_file
        path = self.data_dir / "secret.key"
        if not path.exists():
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        self._secret_from_file = path.read_text().strip()
        return self._secret_from_file

    def gpu_agent_credential(self) -> str:
        """What GPU agents present: the configured token (the Helm chart shares one Secret with its agents),
        else one derived from the secret key."""
        from controlplane.core.security import service_token

        return self.gpu_agent_token or service_token(self.secret_key_value(), "gpu-agent")


@lru_cache
def get_settings() -> Settings:
    return Settings()
