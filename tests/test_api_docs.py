"""docs/api.md's field tables are what tools/api_docs.py makes of app/api/schemas now.

A field added, removed or changed in a request or response body without
`python -m tools.api_docs` shows here, and so does a hand edit of the generated part.
"""

from __future__ import annotations

from tools.api_docs import PAGE, documented_models, render_page


def test_api_field_tables_are_generated_from_the_schemas() -> None:
    current = PAGE.read_text(encoding="utf-8")
    assert current == render_page(current), (
        "docs/api.md's field tables are stale: run `python -m tools.api_docs`"
    )


def test_every_request_and_response_body_has_a_table() -> None:
    text = PAGE.read_text(encoding="utf-8")
    names = [model.__name__ for _, models in documented_models() for model in models]
    for body in ("SearchRequest", "SearchResponse", "BatchSearchRequest", "ReindexRequest"):
        assert body in names
    missing = [name for name in names if f"### `{name}`" not in text]
    assert not missing, f"docs/api.md has no table for {missing}"
