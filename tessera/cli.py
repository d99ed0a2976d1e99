"""The `tessera` command: serve, worker, migrate, openapi."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from tessera.core.settings import ROOT, get_settings, listen_url


def _alembic_config():
    from alembic.config import Config

    from tessera.core.db import database_url

    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url().replace("%", "%%"))
    return config


def migrate(_args: argparse.Namespace) -> int:
    from alembic import command

    command.upgrade(_alembic_config(), "head")
    print("database is at the latest migration")
    return 0


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from tessera.core import logs

    # The address served is the public one unless TESSERA_PUBLIC_URL says otherwise (settings),
    # in this process and in the server processes it starts.
    os.environ["HOST"], os.environ["PORT"] = args.host, str(args.port)
    get_settings.cache_clear()
    settings = get_settings()
    logs.configure(settings)
    if not settings.database_url:
        # Start the embedded PostgreSQL once here and hand its URL to every server process.
        from tessera.core.db import database_url

        os.environ["DATABASE_URL"] = database_url()
    # uvicorn shuts down gracefully on SIGTERM, then raises it again: exit through Python, so the
    # embedded PostgreSQL is let go of (below) rather than left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        if args.first_admin:
            _announce_when_serving(args, _first_run_lines(args.first_admin, settings))
        uvicorn.run(
            "tessera.web.asgi:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=None,
            access_log=False,  # RequestContext writes the access log, with the request id
            proxy_headers=True,
            server_header=False,
            lifespan="on",
        )
    except KeyboardInterrupt:  # Ctrl-C, after the graceful shutdown
        return 128 + signal.SIGINT
    finally:
        if not settings.database_url:
            from tessera.core import db

            db.stop_embedded()
    return 0


def _first_run_lines(email: str, settings) -> list[str]:
    """Create the first admin when there are no users yet; what to tell the developer."""
    import asyncio

    from models.identity import first_admin as admin

    url = settings.public_url.rstrip("/")
    lines = [f"Tessera is serving {url} (interactive docs: {url}/docs)."]
    password = _generated_password()
    created = asyncio.run(
        admin.create_admin(
            email=email, password=password, org_name="Default organization", only_if_empty=True
        )
    )
    if created is not None:
        lines += [f"First admin: {email}", f"Password (shown once): {password}"]
    else:
        lines.append("Lost the admin's password? .venv/bin/tessera create-admin --reset-password")
    lines.append(f"Mail is not sent in development: it is written to {settings.data_dir / 'mail'}")
    return lines


def _announce_when_serving(args: argparse.Namespace, lines: list[str]) -> None:
    """Print `lines`, framed, once the server accepts connections: after its start-up logs."""
    import socket
    import threading
    import time
    from urllib.parse import urlsplit

    host = urlsplit(listen_url(args.host, args.port)).hostname

    def announce() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host, args.port), timeout=1).close()
            except OSError:
                time.sleep(0.2)
                continue
            time.sleep(0.3)  # let the last start-up lines through first
            print("\n" + _framed(lines) + "\n", flush=True)
            return

    threading.Thread(target=announce, name="first-run", daemon=True).start()


def worker(args: argparse.Namespace) -> int:
    from tessera.core import logs

    settings = get_settings()
    logs.configure(settings)
    import workers  # noqa: F401  (declares every actor on the broker)
    from workers import runner

    if settings.worker_metrics_port is not None:
        # Job outcomes are counted where jobs run; Prometheus scrapes each worker here.
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)

    runner.run_forever(threads=args.threads)
    return 0


def _generated_password() -> str:
    import secrets

    return "Tsr-" + secrets.token_urlsafe(18) + "-9a!"  # meets every password rule


def _framed(lines: list[str]) -> str:
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule])


def create_admin(args: argparse.Namespace) -> int:
    """Create an organization owner, or (--reset-password) give an existing user a new password.
    The password comes from TESSERA_ADMIN_PASSWORD or a prompt (on a terminal, when creating);
    otherwise it is generated and printed once."""
    import asyncio
    import getpass

    from tessera.core.errors import ApiError

    password = os.environ.get("TESSERA_ADMIN_PASSWORD")
    generated = False
    if not password and sys.stdin.isatty() and not (args.if_no_users or args.reset_password):
        password = getpass.getpass("Password for the admin: ")
    elif not password:
        password, generated = _generated_password(), True
    try:
        lines = asyncio.run(_create_or_reset(args, password))
    except ApiError as exc:
        print(f"tessera create-admin: {exc.message}", file=sys.stderr)
        return 1
    if lines is None:
        print(
            "users already exist; no admin created "
            "(a new password for the first one: tessera create-admin --reset-password)"
        )
        return 0
    if generated:
        lines.append(f"Password (shown once): {password}")
    print(_framed(lines))
    return 0


async def _create_or_reset(args: argparse.Namespace, password: str) -> list[str] | None:
    from models.identity import first_admin as admin
    from models.signin import operator
    from tessera.core.errors import ValidationFailed

    if args.reset_password:
        user = await operator.reset_password(email=args.email, password=password)
        return [f"New password for {user.email}; every sign-in they held is revoked."]
    if not args.email:
        raise ValidationFailed("--email is required to create an admin.")
    created = await admin.create_admin(
        email=args.email, password=password, org_name=args.org_name, only_if_empty=args.if_no_users
    )
    if created is None:
        return None
    return [f"Created admin {args.email} ({created}) owning organization '{args.org_name}'."]


def openapi(_args: argparse.Namespace) -> int:
    from tessera.web.contract import SPEC_PATH

    sys.stdout.write(SPEC_PATH.read_text(encoding="utf-8"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tessera", description="Tessera API server and tools")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve the API over HTTP")
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    p.add_argument("--workers", type=int, default=1, help="server processes")
    p.add_argument(
        "--first-admin",
        metavar="EMAIL",
        help="with no users yet, create this organization owner; once serving, print its "
        "password (or how to reset it) and where development mail goes",
    )
    p.set_defaults(func=serve)

    p = sub.add_parser("worker", help="consume background jobs")
    p.add_argument("--threads", type=int, default=4)
    p.set_defaults(func=worker)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=migrate)
    sub.add_parser("openapi", help="print the bundled OpenAPI document").set_defaults(func=openapi)

    p = sub.add_parser(
        "create-admin", help="create an organization owner, or give one a new password"
    )
    p.add_argument("--email", help="required to create; with --reset-password, the first user")
    p.add_argument("--org-name", default="Default organization")
    p.add_argument(
        "--if-no-users", action="store_true", help="only when the database has no users yet"
    )
    p.add_argument(
        "--reset-password",
        action="store_true",
        help="set a new password (printed once) for --email or the first user, and revoke the "
        "sign-ins they hold",
    )
    p.set_defaults(func=create_admin)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
