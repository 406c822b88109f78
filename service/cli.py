"""``python -m service serve|migrate|api-keys|reap|dev``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from service.core.settings import get_settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.observability.logging import logging_dict
    from service.observability.metrics import exposition

    settings = get_settings()
    exposition.prepare_multiprocess_dir()
    uvicorn.run(
        "service.api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # Applied in every worker process, so each one logs JSON.
        log_config=logging_dict(settings.log_level),
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        timeout_graceful_shutdown=20,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from service.core import migrate

    migrate.upgrade(get_settings(), args.revision)
    print(f"database at revision {migrate.current_revision(get_settings())}")
    return 0


def _api_keys(args: argparse.Namespace) -> int:
    from service.auth import api_keys
    from service.core.db import session_scope

    with session_scope(get_settings()) as session:
        if args.action == "create":
            try:
                new = api_keys.create_api_key(session, owner=args.owner, name=args.name)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"created API key {new.row.prefix} for owner {new.row.owner}; it is shown only once:")
            print(new.token)
        elif args.action == "list":
            for key in api_keys.list_api_keys(session, owner=args.owner):
                state = "revoked" if key.revoked_at else "active"
                last_used = key.last_used_at.isoformat() if key.last_used_at else "never"
                print(
                    f"{key.prefix}\t{key.owner}\t{key.name}\t{state}\tcreated {key.created_at.isoformat()}"
                    f"\tlast used {last_used}"
                )
        else:
            revoked = api_keys.revoke_api_key(session, prefix=args.prefix)
            if revoked is None:
                print(f"no active API key with prefix {args.prefix}", file=sys.stderr)
                return 1
            print(f"revoked API key {args.prefix}; ended {revoked.sessions_ended} browser sessions made with it")
    return 0


def _reap(_args: argparse.Namespace) -> int:
    from service.recordings.jobs import reap_stale_uploads

    summary = reap_stale_uploads(get_settings())
    print(
        f"examined {summary.examined} stale pending uploads, expired {summary.expired}; "
        f"swept {summary.swept} settled keys; removed {summary.expired_sessions} expired browser sessions"
    )
    return 0


def _dev(args: argparse.Namespace) -> int:
    from service.devrun import run_local

    return run_local(host=args.host, port=args.port, s3_port=args.s3_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service", description="Recordings service")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API with uvicorn")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    serve.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    serve.set_defaults(func=_serve)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(func=_migrate)

    keys = commands.add_parser("api-keys", help="create, list or revoke API keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create", help="create a key; prints it alone on the last line")
    create.add_argument("--owner", required=True, help="tenant id that the key acts for")
    create.add_argument("--name", default="api key")
    listing = key_actions.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--owner")
    revoke = key_actions.add_parser("revoke", help="revoke a key by its public prefix")
    revoke.add_argument("prefix")
    keys.set_defaults(func=_api_keys)

    reap = commands.add_parser(
        "reap", help="expire stale pending uploads, remove untracked bytes and expired browser sessions"
    )
    reap.set_defaults(func=_reap)

    dev = commands.add_parser("dev", help="local run: SQLite + embedded S3 server + API")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--s3-port", type=int, default=9000)
    dev.set_defaults(func=_dev)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.func
    return command(args)
