"""`faq-serve`: start the service with the settings from the environment."""

from __future__ import annotations

import json
import logging

import uvicorn

from app.core.config import get_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
    )
