"""`faq-serve`: start the service with the settings from the environment."""

from __future__ import annotations

import json

import uvicorn

from app.core.config import get_settings
from app.core.logging import configure_logging


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    base = f"http://{settings.host}:{settings.port}"
    example = json.dumps({"query": "can I cancel mi pedido", "top_k": 3})
    print(
        f"\nFAQ search on {base}  (docs: {base}/docs, metrics: {base}/metrics)\n"
        f"Try:\n  curl -s {base}/search -H 'Content-Type: application/json' "
        f"-d '{example}'\n",
        flush=True,
    )
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Our logging setup stays in place, and app.access writes one line per request with
        # its request id, so uvicorn's own access log would only repeat it.
        log_config=None,
        access_log=False,
    )
