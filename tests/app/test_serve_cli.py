"""`faq-serve` options (issue 11): --help prints usage and starts nothing, --host/--port/--workers
win over the FAQ_ environment, a port in use is one line on stderr and exit status 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import apply_options
from app.core.config import Settings
from tests.app.conftest import REPO


def _run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m app.cli ARGS` in `cwd` (away from the repository's .env, if any)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port with a listening socket on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_help_prints_usage_and_starts_nothing(tmp_path: Path, busy_port: int) -> None:
    # With the port taken, a CLI that ignored --help and started would fail with status 2.
    r = _run_cli("--help", cwd=tmp_path, env={"FAQ_PORT": str(busy_port)})
    assert r.returncode == 0, r.stderr
    assert "usage: faq-serve" in r.stdout
    for text in ("--host", "--port", "--workers", "FAQ_PORT", "environment"):
        assert text in r.stdout
    assert "FAQ search on" not in r.stdout
    assert r.stderr == ""


def test_unknown_option_is_one_line_and_status_2(tmp_path: Path) -> None:
    r = _run_cli("--prot", "9000", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1
    assert "unrecognized arguments: --prot" in r.stderr


def test_options_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"FAQ_HOST": "127.0.0.1", "FAQ_PORT": "8000", "FAQ_WORKERS": "1"}
    apply_options(["--host", "0.0.0.0", "--port", "9123", "--workers", "3"], environ)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 9123, 3)


def test_environment_kept_without_options() -> None:
    environ = {"FAQ_PORT": "8001"}
    apply_options([], environ)
    assert environ == {"FAQ_PORT": "8001"}


def test_port_in_use_is_one_line_without_traceback(tmp_path: Path, busy_port: int) -> None:
    # FAQ_PORT names another port: the error naming busy_port shows that --port reached the bind.
    r = _run_cli("--port", str(busy_port), cwd=tmp_path, env={"FAQ_PORT": "1"})
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr == (
        f"faq-serve: error: 127.0.0.1:{busy_port} is already in use "
        "(FAQ_PORT / --port to choose another)\n"
    )


def test_invalid_port_is_one_line(tmp_path: Path) -> None:
    r = _run_cli("--port", "70000", cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("faq-serve: error: invalid setting FAQ_PORT")
    assert r.stderr.count("\n") == 1
