"""The `tessera` command: serve, worker, migrate, openapi."""

from __future__ import annotations

import argparse
import os
import sys

from tessera.core.settings import ROOT, get_settings


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
    return 0


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


def create_admin(args: argparse.Namespace) -> int:
    """Create an organization owner. The password comes from TESSERA_ADMIN_PASSWORD, a prompt, or
    (with --if-no-users, for a fresh `make run`) is generated and printed once."""
    import asyncio
    import getpass
    import secrets

    from models.identity import first_admin as admin

    password = os.environ.get("TESSERA_ADMIN_PASSWORD")
    generated = False
    if not password and args.if_no_users:
        password, generated = "Tsr-" + secrets.token_urlsafe(18) + "-9a!", True
    elif not password:
        password = getpass.getpass("Password for the admin: ")
    created = asyncio.run(
        admin.create_admin(
            email=args.email,
            password=password,
            org_name=args.org_name,
            only_if_empty=args.if_no_users,
        )
    )
    if created is None:
        print("users already exist; no admin created")
        return 0
    print(f"created admin {args.email} ({created}) owning organization '{args.org_name}'")
    if generated:
        print(f"password (shown once): {password}")
    return 0


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
    p.set_defaults(func=serve)

    p = sub.add_parser("worker", help="consume background jobs")
    p.add_argument("--threads", type=int, default=4)
    p.set_defaults(func=worker)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=migrate)
    sub.add_parser("openapi", help="print the bundled OpenAPI document").set_defaults(func=openapi)

    p = sub.add_parser("create-admin", help="create an organization owner")
    p.add_argument("--email", required=True)
    p.add_argument("--org-name", default="Default organization")
    p.add_argument(
        "--if-no-users", action="store_true", help="only when the database has no users yet"
    )
    p.set_defaults(func=create_admin)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
