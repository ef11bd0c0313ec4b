"""`faq-serve`: start the service with the settings from the environment and the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import MutableMapping, Sequence
from typing import NoReturn

from pydantic import ValidationError

from app.core.config import Settings, get_settings
from app.core.logging import configure_logging
from app.server import ListenError, serve

PROG = "faq-serve"

# Command-line option -> the setting it overrides (its FAQ_ environment variable).
OPTIONS = {"host": "FAQ_HOST", "port": "FAQ_PORT", "workers": "FAQ_WORKERS"}

EPILOG = """\
Every option also has a FAQ_ environment setting (--host = FAQ_HOST, --port = FAQ_PORT,
--workers = FAQ_WORKERS); an option given here wins over the environment and a .env file.
All other settings (model, index, keys, limits) are read from FAQ_* environment variables
or .env only: see app/core/config.py.

Exit status: 0 after a clean stop (Ctrl-C / SIGTERM); 2 for an unknown option, an invalid
setting, or an address that cannot be listened on (e.g. the port is already in use).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line on stderr (argparse's default also prints the usage), exit status 2.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def apply_options(argv: Sequence[str] | None, environ: MutableMapping[str, str]) -> None:
    """Parse argv and write the options given into `environ` as their FAQ_ settings: spawned
    workers build their own settings from the environment."""
    p = _Parser(
        prog=PROG,
        description="Serve the FAQ search API (FastAPI under uvicorn).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", help="Address to listen on (FAQ_HOST, default 127.0.0.1).")
    p.add_argument("--port", type=int, help="TCP port to listen on (FAQ_PORT, default 8000).")
    workers = "Worker processes on one listening socket (FAQ_WORKERS, default 1, at most 64)."
    p.add_argument("--workers", type=int, help=workers)
    args = p.parse_args(argv)
    for option, variable in OPTIONS.items():
        if getattr(args, option) is not None:
            environ[variable] = str(getattr(args, option))


def load_settings(overrides: dict[str, object] | None = None, prog: str = PROG) -> Settings:
    """The settings from the environment and .env (`overrides` win), or exit 2 naming every
    invalid one by its FAQ_ variable."""
    get_settings.cache_clear()
    try:
        return Settings(**overrides) if overrides else get_settings()  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = (str(err["loc"][0]) if err["loc"] else "?").upper()
            name = name if name.startswith("FAQ_") else f"FAQ_{name}"
            problems.append(f"{name}: {err['msg']}")
        print(f"{prog}: error: invalid setting " + "; ".join(problems), file=sys.stderr)
        raise SystemExit(2) from None


def keyed(settings: Settings) -> bool:
    return bool(settings.search_api_key or settings.search_api_key_file)


def open_to_others(settings: Settings) -> bool:
    """Listening beyond this machine (0.0.0.0, a LAN address) without a search key."""
    loopback = settings.host in ("localhost", "::1") or settings.host.startswith("127.")
    return not loopback and not keyed(settings)


def banner(settings: Settings) -> str:
    """Where the service listens and a curl line that works against it (the key's header
    when a search key is set: the key itself is never printed)."""
    base = f"http://{settings.host}:{settings.port}"
    example = json.dumps({"query": "can I cancel mi pedido", "top_k": 3})
    key = ' -H "X-API-Key: $FAQ_SEARCH_API_KEY"' if keyed(settings) else ""
    return (
        f"\nFAQ search on {base}  (docs: {base}/docs, metrics: {base}/metrics)\n"
        f"Try:\n  curl -s {base}/search -H 'Content-Type: application/json'{key} "
        f"-d '{example}'\n"
        f"({settings.workers} worker{'s' if settings.workers > 1 else ''})\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    apply_options(argv, os.environ)
    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    print(banner(settings), flush=True)
    if open_to_others(settings):
        print(
            f"{PROG}: warning: listening on {settings.host} with no search key: anyone who "
            "can reach this port can search and embed (set FAQ_SEARCH_API_KEY or "
            "FAQ_SEARCH_API_KEY_FILE, or FAQ_HOST=127.0.0.1)",
            file=sys.stderr,
            flush=True,
        )
    try:
        serve(settings)
    except ListenError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
