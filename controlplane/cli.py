"""The `spaceyard` command: run the platform (`up`, `serve`) and talk to it (`create`, `logs`, ...)."""

from __future__ import annotations

import argparse
import json
import os
import sys

import httpx

from controlplane.core.config import Settings, get_settings
from controlplane.core.files import PRIVATE_UMASK
from controlplane.errors import DomainError


def _api(settings: Settings, token: str | None) -> httpx.Client:
    token = token or os.environ.get("SPACEYARD_TOKEN") or _saved_admin_token(settings)
    if not token:
        sys.exit("No token: pass --token, set SPACEYARD_TOKEN, or create one with `spaceyard user add NAME`.")
    return httpx.Client(base_url=settings.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _saved_admin_token(settings: Settings) -> str | None:
    path = settings.data_dir / "admin-token"
    return path.read_text().strip() if path.exists() else None


def _check(resp: httpx.Response) -> dict | list:
    if resp.status_code >= 400:
        try:
            message = resp.json().get("error")
        except ValueError:
            message = resp.text
        sys.exit(f"error {resp.status_code}: {message}")
    return resp.json()


def cmd_serve(settings: Settings, args) -> int:
    import logging

    import uvicorn
    from uvicorn.main import STARTUP_FAILURE

    from controlplane.access_log import drop_app_traffic
    from controlplane.app import create_app
    from controlplane.shutdown import GRACE_SECONDS, EndStreamsOnShutdown, Server

    # What the control plane writes in the data dir (repos, SQLite, LFS objects) is the operator's alone, also
    # when `serve` runs on its own (a container, a unit file) rather than under `spaceyard up`.
    os.umask(PRIVATE_UMASK)
    # Stage changes, builds and deploys are logged at INFO: the operator's record of what happened when.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    app = EndStreamsOnShutdown(create_app(settings))
    config = uvicorn.Config(
        app,
        # Behind the proxy: loopback only, on its own port (the proxy holds host:port); proxies in other pods (the
        # Helm chart) reach it on host.
        host=settings.host if settings.proxy == "none" or settings.proxy_targets else "127.0.0.1",
        port=settings.internal_port,
        log_level="info",
        proxy_headers=True,
        ws_max_size=64 * 1024 * 1024,
        # "auto" logs a failed start-up as "lifespan unsupported" and serves anyway, without build sending or
        # loops; "on" makes the process exit with the real error.
        lifespan="on",
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    if not settings.access_log:
        drop_app_traffic()
    server = Server(config, app)
    # `up`'s spare: everything above done ahead, it serves once told (a line), or ends with `up` (end of input).
    if args.standby and not sys.stdin.readline():
        return 0
    server.run()
    return 0 if server.started else STARTUP_FAILURE  # as uvicorn.run: a failed start-up is not a clean exit


def ensure_admin(settings: Settings) -> str | None:
    """Create the admin user on first start; return its token then (it is stored hashed)."""
    from sqlalchemy import select

    from controlplane.core.db import Database, migrate
    from controlplane.models import User
    from controlplane.users import add_user, issue_token

    migrate(settings.sqlalchemy_url)
    with Database(settings).session() as s:
        if s.scalar(select(User).where(User.is_admin.is_(True))):
            return None
        token = issue_token(s, add_user(s, "admin", admin=True), "admin")
    path = settings.data_dir / "admin-token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def cmd_up(settings: Settings, _args) -> int:
    """Start every part and supervise them (a part that exits is restarted) until a signal asks to stop."""
    from controlplane.launcher import Platform, Stopped

    platform = Platform({"SPACEYARD_DATA_DIR": str(settings.data_dir.resolve())}, settings.data_dir)
    try:
        platform.lock()  # before anything else: a second `up` on this data dir starts nothing
    except RuntimeError as e:
        print(f"spaceyard up: {e}", file=sys.stderr)
        return 1
    platform.stop_on_signals()
    try:
        print("Spaceyard: starting (Docker engine, Redis, base images, builder, proxy, control plane)...", flush=True)
        token = ensure_admin(settings)
        platform.start()
        print(f"\nSpaceyard is up.\n  Dashboard and API: {settings.base_url}/")
        if token:
            print(f"  Admin token (shown once, also saved in {settings.data_dir / 'admin-token'}): {token}")
        else:
            print(f"  Admin token: in {settings.data_dir / 'admin-token'}")
        print(f"  Logs: {platform.logs}\nPress Ctrl-C to stop.", flush=True)
        platform.supervise()
    except Stopped as e:
        print(f"\nStopping ({e})...", flush=True)
    except (RuntimeError, OSError) as e:
        print(f"spaceyard up: {e}; stopping", file=sys.stderr, flush=True)
        return 1
    finally:
        platform.stop()
        print("Stopped.", flush=True)
    return 0


def cmd_user_add(settings: Settings, args) -> int:
    from controlplane.core.db import Database, migrate
    from controlplane.users import add_user, issue_token

    migrate(settings.sqlalchemy_url)
    with Database(settings).session() as s:
        print(issue_token(s, add_user(s, args.name, admin=args.admin, password=args.password)))
    return 0


def cmd_user_change(settings: Settings, args) -> int:
    """`user disable|enable|password NAME`: on the host, like `user add`; each ends the user's sessions."""
    from sqlalchemy import select

    from controlplane import sessions
    from controlplane.core.db import Database, migrate
    from controlplane.models import User

    migrate(settings.sqlalchemy_url)
    with Database(settings).session() as s:
        user = s.scalar(select(User).where(User.name == args.name))
        if user is None:
            print(f"spaceyard user {args.user_command}: no user {args.name!r}", file=sys.stderr)
            return 1
        if args.user_command == "password":
            sessions.set_password(s, user, args.password)
        else:
            sessions.set_disabled(s, user, args.user_command == "disable")
    print(f"{args.name}: {args.user_command} done; the user's sessions have ended.")
    return 0


def cmd_create(settings: Settings, args) -> int:
    owner, _, name = args.space.partition("/")
    with _api(settings, args.token) as api:
        body = {
            "type": "space",
            "name": name,
            "organization": owner,
            "sdk": args.sdk,
            "visibility": "private" if args.private else "public",
            "hardware": args.hardware,
        }
        out = _check(api.post("/api/repos/create", json=body))
    print(f"Created {args.space}\n  git clone {out['url']}\n  App: {out['appUrl']}")
    return 0


def cmd_logs(settings: Settings, args) -> int:
    kind = "build" if args.build else "run"
    with (
        _api(settings, args.token) as api,
        api.stream(
            "GET", f"/api/spaces/{args.space}/logs/{kind}", params={"follow": str(args.follow).lower()}, timeout=None
        ) as resp,
    ):
        if resp.status_code >= 400:
            resp.read()
            _check(resp)
        for line in resp.iter_lines():
            if line.startswith("data: "):
                print(json.loads(line[6:])["data"], end="", flush=True)  # each line ends in its newline
    return 0


def cmd_hardware(settings: Settings, args) -> int:
    with _api(settings, args.token) as api:
        out = _check(api.post(f"/api/spaces/{args.space}/hardware", json={"flavor": args.flavor}))
    print(f"{args.space}: requested {out['hardware']['requested']}, stage {out['stage']}")
    if out.get("errorMessage"):
        print(f"  {out['errorMessage']}")
    return 0


def cmd_quota(settings: Settings, args) -> int:
    # --max-gpus none lifts the limit.
    limit = None if args.max_gpus.lower() == "none" else int(args.max_gpus)
    with _api(settings, args.token) as api:
        out = _check(api.patch(f"/api/admin/users/{args.user}", json={"max_gpus": limit}))
    print(f"{out['name']}: max GPUs {'unlimited' if out['max_gpus'] is None else out['max_gpus']}")
    return 0


def cmd_usage(settings: Settings, args) -> int:
    params = {"month": args.month} if args.month else {}
    if args.owner:
        params["owner"] = args.owner
    with _api(settings, args.token) as api:
        if args.csv:
            resp = api.get("/api/billing/usage", params={**params, "format": "csv"})
            if resp.status_code >= 400:
                _check(resp)
            print(resp.text, end="")
            return 0
        out = _check(api.get("/api/billing/usage", params=params))
    print(f"{'space':40} {'tier':14} {'hours':>10} {'GPU-hours':>10} {'cost':>10}")
    for row in out["rows"]:
        print(f"{row['space']:40} {row['tier']:14} {row['hours']:>10.2f} {row['gpuHours']:>10.2f} {row['cost']:>10.2f}")
    t = out["totals"]
    print(f"{'total ' + out['month']:55} {t['hours']:>10.2f} {t['gpuHours']:>10.2f} {t['cost']:>10.2f}")
    return 0


def cmd_link(settings: Settings, args) -> int:
    """Link a Space to a repository (or show or remove its link). The credential is read from stdin or
    $SPACEYARD_LINK_CREDENTIAL, never from the command line, where other users of the host could read it."""
    path = f"/api/spaces/{args.space}/link"
    with _api(settings, args.token) as api:
        if args.remove:
            _check(api.delete(path))
            print(f"{args.space} is no longer linked; it keeps its code.")
            return 0
        if args.url is None:
            out = _check(api.get(path))
        else:
            body: dict = {"url": args.url, "branch": args.branch, "new_webhook_secret": args.new_webhook_secret}
            credential = (
                sys.stdin.readline().strip() if args.credential_stdin else os.environ.get("SPACEYARD_LINK_CREDENTIAL")
            )
            if credential is not None:
                body["credential"] = credential
            out = _check(api.put(path, json=body))
    print(f"{args.space} follows {out['url']} ({out['branch']}){' with a credential' if out['hasCredential'] else ''}")
    if sync := out.get("sync"):
        print(f"  sync: {sync['result']}: {sync['detail']}")
    print("  webhook URLs (content type application/json, push events):")
    for provider, url in out["webhooks"].items():
        print(f"    {provider:8} {url}")
    if secret := out.get("webhookSecret"):
        print(f"  webhook secret (shown once): {secret}")
    return 0


def cmd_rollback(settings: Settings, args) -> int:
    """Serve an earlier successful build again (by default the one before the build that serves); --list shows
    the builds to choose from."""
    with _api(settings, args.token) as api:
        if args.list:
            for b in _check(api.get(f"/api/spaces/{args.space}/builds", params={"limit": 20})):
                marks = (
                    " running" * b["running"]
                    + " pinned" * b["pinned"]
                    + " (image removed)" * (b["status"] == "SUCCESS" and not b["imageKept"])
                )
                print(f"{b['id']:>6} {b['status']:9} {b['commit'][:7]} {b['createdAt']} {b['message'] or ''}{marks}")
            return 0
        body = {} if args.build is None else {"build": args.build}
        out = _check(api.post(f"/api/spaces/{args.space}/rollback", json=body))
    print(f"{args.space}: rolling back to build {out['build']} (pinned until the next push)")
    return 0


def cmd_agent_token(settings: Settings, _args) -> int:
    print(settings.gpu_agent_credential())
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spaceyard", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the whole platform on this host").set_defaults(func=cmd_up)
    serve = sub.add_parser("serve", help="run only the control plane (API, git, router, dashboard)")
    serve.add_argument("--standby", action="store_true", help=argparse.SUPPRESS)  # spaceyard up's spare
    serve.set_defaults(func=cmd_serve)
    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    add = user.add_parser("add", help="create a user and print an API token")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true")
    add.add_argument("--password", help="enables dashboard sign-in")
    add.set_defaults(func=cmd_user_add)
    for verb, text in (("disable", "stop a user's tokens and sessions"), ("enable", "let a disabled user in again")):
        change = user.add_parser(verb, help=text)
        change.add_argument("name")
        change.set_defaults(func=cmd_user_change)
    password = user.add_parser("password", help="set a user's dashboard password (ends their sessions)")
    password.add_argument("name")
    password.add_argument("--password", required=True)
    password.set_defaults(func=cmd_user_change)

    def with_token(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--token", help="API token (default: $SPACEYARD_TOKEN, then the saved admin token)")
        return sp

    create = with_token(sub.add_parser("create", help="create a Space"))
    create.add_argument("space", help="owner/name")
    create.add_argument("--sdk", default="gradio", choices=["gradio", "streamlit", "docker", "static"])
    create.add_argument("--private", action="store_true")
    create.add_argument("--hardware", default=None)
    create.set_defaults(func=cmd_create)
    logs = with_token(sub.add_parser("logs", help="print a Space's runtime (or build) log"))
    logs.add_argument("space")
    logs.add_argument("--build", action="store_true", help="the latest build's log")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.set_defaults(func=cmd_logs)
    hw = with_token(sub.add_parser("hardware", help="request a hardware tier for a Space"))
    hw.add_argument("space")
    hw.add_argument("flavor")
    hw.set_defaults(func=cmd_hardware)
    quota = with_token(sub.add_parser("quota", help="set a user's GPU quota (admin)"))
    quota.add_argument("user")
    quota.add_argument("--max-gpus", required=True, help="GPUs the user's Spaces may hold at once, or 'none'")
    quota.set_defaults(func=cmd_quota)
    usage = with_token(sub.add_parser("usage", help="hours, GPU-hours and cost for a month"))
    usage.add_argument("--month", help="YYYY-MM (default: this month)")
    usage.add_argument("--owner", help="admins: another owner, or 'all'")
    usage.add_argument("--csv", action="store_true")
    usage.set_defaults(func=cmd_usage)
    link = with_token(sub.add_parser("link", help="link a Space to a repository that deploys on push"))
    link.add_argument("space", help="owner/name")
    link.add_argument("url", nargs="?", help="http(s) URL of the repository; omitted: show the link")
    link.add_argument("--branch", default="main")
    link.add_argument("--credential-stdin", action="store_true", help="read a deploy token (or user:token)")
    link.add_argument("--new-webhook-secret", action="store_true", help="replace the webhook secret")
    link.add_argument("--remove", action="store_true", help="unlink (the Space keeps its code)")
    link.set_defaults(func=cmd_link)
    rollback = with_token(sub.add_parser("rollback", help="serve an earlier successful build again, no rebuild"))
    rollback.add_argument("space", help="owner/name")
    rollback.add_argument("build", nargs="?", type=int, help="build id (default: the one before the build that serves)")
    rollback.add_argument("--list", action="store_true", help="list the Space's builds instead")
    rollback.set_defaults(func=cmd_rollback)
    sub.add_parser("agent-token", help="print the GPU agent's credential").set_defaults(func=cmd_agent_token)
    # Listed for --help; main() hands its arguments to the agent's own parser untouched.
    sub.add_parser("gpu-agent", help="sample this node's GPUs and report them (spaceyard gpu-agent --help)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gpu-agent"]:
        from controlplane.gpu_agent.agent import main as agent_main

        return agent_main(argv[1:])
    args = parser().parse_args(argv)
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return args.func(settings, args)
    except DomainError as e:  # the CLI's one mapping of a domain error (controlplane/errors.py): its message
        print(f"spaceyard {' '.join(argv[:2])}: {e.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
