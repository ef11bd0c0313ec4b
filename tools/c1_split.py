"""Where a lone /search spends the time that `make c1-ratio` finds over the raw measure, without
a server: three layers timed in one process, interleaved in blocks so that drift reaches each.

- `raw`: the raw measure's work, tokenise + ONNX Runtime on the calling thread, then the
  route's answering (search, grouping, language, abstain) with the live threshold;
- `service`: `SearchService.answer`, the same through the inference thread and the search
  combiner;
- `asgi`: the whole app (middleware, body validation, route, JSON) called as ASGI, no server.

What `make c1-ratio` measures beyond `asgi` is the HTTP server, the kernel and the load
generator. Settings are read as faq-serve reads them (`FAQ_MODEL_DIR`, `FAQ_INDEX_PATH`, ...).

    .venv/bin/python -m tools.c1_split [--query Q] [--top-k 5] [--blocks 15] [--per-block 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import replace
from typing import Any

import uvloop
from fastapi import FastAPI

from app.api.routes.search import query_spec
from app.api.schemas.search import SearchRequest
from app.main import create_app
from tools.bench_peer import default_query


async def asgi_search(app: FastAPI, body: bytes) -> None:
    """One POST /search through the app's ASGI interface; fails unless it answers 200."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/search",
        "raw_path": b"/search",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if sent[0].get("status") != 200:
        raise RuntimeError(f"/search answered {sent[0].get('status')}: {sent[1:]}")


async def split(query: str, top_k: int, blocks: int, per_block: int) -> dict[str, float]:
    app = create_app()
    async with app.router.lifespan_context(app):
        search = app.state.search
        spec = query_spec(SearchRequest(query=query, top_k=top_k))
        encoder = search.queries.encoder
        store = search.guard.store
        threshold = search.answering.threshold(search.guard.current()).min_score
        with_threshold = replace(spec, min_score=threshold)
        body = json.dumps({"query": query, "top_k": top_k}).encode()

        async def raw() -> None:
            # The class's method: the inference worker routes the instance's to its thread.
            tokens = encoder.tokenize([query], "query")
            vectors = type(encoder).encode_tokenized(encoder, tokens).vectors
            await search.answering.answer_batch(
                [with_threshold],
                vectors,
                store.search_batch,
                search.max_query_chars,
                topic_entries=store.topic_entries(),
            )

        async def service() -> None:
            await search.answer([spec])

        async def asgi() -> None:
            await asgi_search(app, body)

        layers: dict[str, Callable[[], Awaitable[None]]] = {
            "raw": raw,
            "service": service,
            "asgi": asgi,
        }
        for run in layers.values():  # warm-up
            for _ in range(per_block):
                await run()
        times: dict[str, list[float]] = {name: [] for name in layers}
        for _ in range(blocks):
            for name, run in layers.items():
                for _ in range(per_block):
                    started = time.perf_counter()
                    await run()
                    times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) * 1000.0 for name, t in times.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.c1_split", description=__doc__)
    parser.add_argument("--query", default=default_query())
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--per-block", type=int, default=20)
    args = parser.parse_args(argv)
    # uvicorn's loop when uvloop is installed, as it is with uvicorn[standard].
    p50 = uvloop.run(split(args.query, args.top_k, args.blocks, args.per_block))
    for name, ms in p50.items():
        print(f"{name:8s} p50 {ms:.3f} ms  {ms / p50['raw']:.2f}x raw")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
