"""wrk driving: the generated script, reading its output, the /proc meters; one live run."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tools.loadgen import (
    WRK_MARK,
    Request,
    Server,
    ServerError,
    WrkOutputError,
    descendants,
    json_post,
    lua_script,
    parse_proc_stat,
    parse_wrk_output,
    run_wrk,
)

WRK_TEXT = """Running 3s test @ http://127.0.0.1:8766/search
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms    1.20ms  30.00ms   90.00%
  1200 requests in 3.00s, 1.2MB read
  Non-2xx or 3xx responses: 3
Requests/sec:    400.00
"""


def wrk_json(**overrides: object) -> str:
    data = {
        "duration_us": 3_000_000,
        "elapsed_us": 2_500_000,
        "requests": 1200,
        "bytes": 1_200_000,
        "errors": {"connect": 0, "read": 1, "write": 0, "status": 3, "timeout": 2},
        "latency_us": {
            "mean": 4100.0,
            "max": 30000,
            "percentiles": {"50": 3900, "90": 5200, "99": 12000},
        },
        "statuses": {"200": 1195, "422": 2, "503": 1, "404": 2},
    }
    data.update(overrides)
    return WRK_TEXT + WRK_MARK + json.dumps(data) + "\n"


def test_parse_reads_the_json_line_and_derives_rates() -> None:
    r = parse_wrk_output(wrk_json(), concurrency=8)
    assert r.concurrency == 8
    assert r.seconds == 2.5  # first to last response, not wrk's -d time
    assert r.requests == 1200
    assert r.ok == 1195
    assert r.server_errors == 1
    assert r.socket_errors == {"connect": 0, "read": 1, "write": 0, "timeout": 2}
    assert r.socket_error_count == 3
    assert r.errors == 1200 - 1195 + 3
    assert r.req_per_s == pytest.approx(1195 / 2.5)
    assert r.latency_ms == {"p50": 3.9, "p90": 5.2, "p99": 12.0, "mean": 4.1, "max": 30.0}
    assert list(r.statuses) == sorted(r.statuses)


def test_parse_falls_back_to_wrks_duration_without_a_timed_response() -> None:
    r = parse_wrk_output(wrk_json(elapsed_us=0, requests=0, statuses={}), concurrency=1)
    assert r.seconds == 3.0
    assert r.req_per_s == 0.0


def test_parse_refuses_output_without_the_line() -> None:
    with pytest.raises(WrkOutputError, match="no WRK_JSON line"):
        parse_wrk_output(WRK_TEXT, concurrency=1)
    with pytest.raises(WrkOutputError, match="unreadable"):
        parse_wrk_output(WRK_TEXT + WRK_MARK + "{not json\n", concurrency=1)


def test_script_holds_every_request_exactly_and_the_bound() -> None:
    tricky = 'a ]] b ]=] "c" \\ d\nline'
    script = lua_script(
        [json_post("/search", {"query": tricky}, {"X-API-Key": "k"}), Request("GET", "/h")],
        max_requests=123,
    )
    assert "local max_requests = 123" in script
    # The body sits in a long bracket of a level its content cannot close.
    assert "[==[\n" + json.dumps({"query": tricky}) + "]==]" in script
    assert "[ [[\nX-API-Key]] ] = [[\nk]]" in script
    assert "wrk.thread:stop()" in script
    with pytest.raises(ValueError):
        lua_script([], 10)
    with pytest.raises(ValueError):
        lua_script([Request("GET", "/")], 0)


def test_proc_stat_line_with_spaces_and_parentheses_in_the_name() -> None:
    # field 3 is "S", ppid field 4; utime/stime are fields 14/15, rss field 24
    fields = ["S", "41", *["0"] * 9, "700", "300", *["0"] * 8, "2500", "0"]
    line = "1234 (uvicorn (worker) 1) " + " ".join(fields)
    assert parse_proc_stat(line) == (41, 1000, 2500)


def test_descendants_walks_the_whole_tree() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 12, 20: 1, 30: 99}
    assert descendants(10, parents) == [10, 11, 12, 13]
    assert descendants(30, parents) == [30]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status = {"/ok": 200, "/boom": 500}.get(self.path, 404)
        body = b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk not installed (scripts/ensure-debs.sh wrk)"
)
def test_live_wrk_run_stops_at_the_request_bound_and_counts_statuses(stub_url: str) -> None:
    requests = [Request("GET", "/ok"), json_post("/boom", {"q": "x"}), Request("GET", "/nope")]
    r = run_wrk(stub_url, requests, concurrency=2, duration_s=2, max_requests=60)
    assert sum(r.statuses.values()) == 60
    assert set(r.statuses) == {"200", "404", "500"}
    assert r.server_errors == r.statuses["500"] > 0
    assert r.socket_error_count == 0
    assert 0 < r.seconds < 1.9  # timed to the last response: the bound came before the 2 s


def test_server_refuses_a_port_that_something_else_answers_on(
    stub_url: str, tmp_path: Path
) -> None:
    server = Server(
        "x", [sys.executable, "-c", "pass"], health_url=f"{stub_url}/ok", log=tmp_path / "x.log"
    )
    with pytest.raises(ServerError, match="already in use"):
        server.start(5)
    assert server.proc is None  # nothing was started


def test_server_starts_waits_for_health_and_stops(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    server = Server(
        "http.server",
        cmd,
        health_url=f"http://127.0.0.1:{port}/",
        log=tmp_path / "s.log",
        cwd=tmp_path,
    )
    with server.start(20):
        assert server.proc is not None and server.proc.poll() is None
    assert server.proc.returncode == -signal.SIGTERM  # stopped by TERM, not the KILL fallback


def test_server_that_exits_early_reports_its_log(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "print('cannot start: boom'); raise SystemExit(3)"]
    server = Server("bad", cmd, health_url="http://127.0.0.1:9/", log=tmp_path / "b.log")
    with pytest.raises(ServerError, match=r"(?s)exited with 3.*cannot start: boom"):
        server.start(20)
