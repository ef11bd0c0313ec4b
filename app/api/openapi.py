"""The OpenAPI document as the server really behaves, built once the service is up.

FastAPI's own document is close; this finishes it:
- no `HTTPValidationError`: every error is the one `{"error": ...}` shape (`ErrorResponse`),
  and a route lists exactly the statuses it can answer with (`app.api.responses.errors`);
- the limits that are settings, not code: the most queries (texts) per batch, the reindex
  sources that exist, the served model's names;
- without a search key the search routes are open, so they declare no security and no 401;
- HEAD operations have no body.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api.deps import SEARCH_SCHEME
from app.api.schemas.search import BatchSearchRequest, SearchRequest
from app.core.config import Settings


def _operations(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (method, op)
        for item in doc.get("paths", {}).values()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op
    ]


def _drop_fastapi_validation(doc: dict[str, Any]) -> None:
    for _, op in _operations(doc):
        response = op["responses"].get("422", {})
        ref = response.get("content", {}).get("application/json", {}).get("schema", {})
        if ref.get("$ref", "").endswith("/HTTPValidationError"):
            # A route whose parameters cannot fail validation (a plain string in the path).
            del op["responses"]["422"]
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def _open_search(doc: dict[str, Any]) -> None:
    """No search key configured: the search routes take any request."""
    for _, op in _operations(doc):
        if any(SEARCH_SCHEME in req for req in op.get("security", [])):
            del op["security"]
            op["responses"].pop("401", None)
    doc.get("components", {}).get("securitySchemes", {}).pop(SEARCH_SCHEME, None)


def _limits(doc: dict[str, Any], settings: Settings, model_names: list[str] | None) -> None:
    # Every schema named here is in the document: the routes that take them are always there.
    schemas = doc["components"]["schemas"]
    most = settings.search_batch_max_queries
    schemas["BatchSearchRequest"]["properties"]["queries"]["maxItems"] = most
    embeddings = schemas["EmbeddingsRequest"]["properties"]
    for variant in embeddings["input"].get("anyOf", []):
        if variant.get("type") == "array":
            variant["maxItems"] = most
    if model_names:
        embeddings["model"]["enum"] = model_names
    reindex = schemas["ReindexRequest"]
    if settings.reindex_sources:
        reindex["properties"]["source"]["enum"] = sorted(settings.reindex_sources)
    else:
        # No source can be named: only the inline form remains.
        del reindex["properties"]["source"]
        reindex.pop("oneOf", None)
        reindex["required"] = ["items"]


def _bodies_read_by_routes(doc: dict[str, Any]) -> None:
    """The request bodies the hot routes validate themselves (`routes/search.py`), which
    FastAPI therefore does not list."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (SearchRequest, BatchSearchRequest):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema


def _bodiless_head(doc: dict[str, Any]) -> None:
    for method, op in _operations(doc):
        if method == "head":
            for response in op["responses"].values():
                response.pop("content", None)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """`app.openapi`: the document, cached once the encoder is loaded (its names go in)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    encoder = getattr(app.state, "encoder", None)
    names = [encoder.name, encoder.fingerprint] if encoder is not None else None
    _drop_fastapi_validation(doc)
    _bodies_read_by_routes(doc)
    if app.state.api_keys.search is None:
        _open_search(doc)
    _limits(doc, app.state.settings, names)
    _bodiless_head(doc)
    if encoder is not None:
        app.openapi_schema = doc
    return doc
