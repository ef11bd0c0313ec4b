"""`faq-serve`: start the service with the settings from the environment."""

from __future__ import annotations

import json

from app.core.config import get_settings
from app.core.logging import configure_logging
from app.server import serve


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    base = f"http://{settings.host}:{settings.port}"
    example = json.dumps({"query": "can I cancel mi pedido", "top_k": 3})
    print(
        f"\nFAQ search on {base}  (docs: {base}/docs, metrics: {base}/metrics)\n"
        f"Try:\n  curl -s {base}/search -H 'Content-Type: application/json' "
        f"-d '{example}'\n"
        f"({settings.workers} worker{'s' if settings.workers > 1 else ''})\n",
        flush=True,
    )
    # Workers are separate processes: each builds its own app and reads the same settings.
    serve(settings)
