"""Rewrite the field tables of docs/api.md from the pydantic schemas in app/api/schemas.

    python -m tools.api_docs           # rewrite the part between the `fields` markers
    python -m tools.api_docs --check   # exit 1 when that part differs from the schemas now

One table per request and response body: every model in DOCUMENTED, and every
model their fields hold (a result inside a response), module by module in definition order.
Field names, types, bounds, defaults and descriptions are read from the models when this runs.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from types import ModuleType
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from app.api.schemas.admin import (
    CollectionOut,
    FaqEdit,
    FaqEditResult,
    FaqEntry,
    ReindexRequest,
    RollbackRequest,
    RollbackResponse,
)
from app.api.schemas.analytics import AnalyticsResponse
from app.api.schemas.errors import ErrorBody, ErrorDetail, ErrorResponse
from app.api.schemas.feedback import ClickFeedback, FeedbackResult, VoteFeedback
from app.api.schemas.health import LiveResponse, ReadyResponse
from app.api.schemas.openai import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    InfoResponse,
    ModelList,
)
from app.api.schemas.search import (
    BatchSearchItem,
    BatchSearchRequest,
    BatchSearchResponse,
    SearchFilters,
    SearchRequest,
    SearchResponse,
    SearchResult,
)
from tools.docgen import ROOT, cell, constraints, replace_between, type_name, write_or_check

PAGE = ROOT / "docs" / "api.md"
PACKAGE = "app.api.schemas"
COMMAND = "python -m tools.api_docs"
# The search bodies first (what most readers come for), then the rest; a module not named
# here follows in alphabetical order.
MODULE_ORDER = ("search", "admin", "openai", "health", "errors")
# The bodies the routes take and give; every model their fields hold is documented too.
DOCUMENTED: tuple[type[BaseModel], ...] = (
    AnalyticsResponse,
    BatchSearchItem,
    BatchSearchRequest,
    BatchSearchResponse,
    ClickFeedback,
    CollectionOut,
    EmbeddingsRequest,
    EmbeddingsResponse,
    ErrorBody,
    ErrorDetail,
    ErrorResponse,
    FaqEdit,
    FaqEditResult,
    FaqEntry,
    FeedbackResult,
    InfoResponse,
    LiveResponse,
    ModelList,
    ReadyResponse,
    ReindexRequest,
    RollbackRequest,
    RollbackResponse,
    SearchFilters,
    SearchRequest,
    SearchResponse,
    SearchResult,
    VoteFeedback,
)


def _nested_models(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in get_args(tp) for m in _nested_models(arg)]


def _modules(package: ModuleType) -> list[ModuleType]:
    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__))
    ranked = sorted(names, key=lambda n: (MODULE_ORDER.index(n) if n in MODULE_ORDER else 99, n))
    return [importlib.import_module(f"{package.__name__}.{name}") for name in ranked]


def documented_models() -> list[tuple[ModuleType, list[type[BaseModel]]]]:
    """Per schema module, the models to document, in the order they are defined."""
    package = importlib.import_module(PACKAGE)
    wanted: set[type[BaseModel]] = set()
    todo = list(DOCUMENTED)
    while todo:
        model = todo.pop()
        if model in wanted:
            continue
        wanted.add(model)
        for field in model.model_fields.values():
            todo.extend(_nested_models(field.annotation))
    out = []
    for module in _modules(package):
        models = [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type) and obj in wanted and obj.__module__ == module.__name__
        ]
        if models:
            out.append((module, models))
    return out


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True, validated_data={})
    if value is None:
        return "null"
    if isinstance(value, BaseModel):
        return "`{}`" if not value.model_dump(exclude_defaults=True) else f"`{value!r}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def model_table(model: type[BaseModel]) -> str:
    doc = (model.__dict__.get("__doc__") or "").strip()
    lines = [f"### `{model.__name__}`", ""]
    if doc:
        lines += [" ".join(doc.split()), ""]
    extra = model.model_config.get("extra")
    if extra == "forbid":
        lines += ['Unknown fields are refused (422); types are strict (`"5"` is no integer).', ""]
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        kind = type_name(field.annotation)
        bounds = constraints(field)
        kind = f"{kind}, {bounds}" if bounds else kind
        lines.append(
            f"| `{field.alias or name}` | {cell(kind)} | {cell(_default(field))} "
            f"| {cell(field.description or '')} |"
        )
    return "\n".join(lines)


def render_fields() -> str:
    parts = [
        "<!-- Generated by `python -m tools.api_docs` from app/api/schemas; do not edit by hand."
        " -->"
    ]
    for module, models in documented_models():
        path = module.__name__.replace(".", "/") + ".py"
        parts.append(f"## Bodies in [`{path}`](../{path})")
        parts += [model_table(model) for model in models]
    return "\n\n".join(parts)


def render_page(current: str) -> str:
    return replace_between(current, "fields", render_fields())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when the tables are stale")
    args = parser.parse_args(argv)
    page = render_page(PAGE.read_text(encoding="utf-8"))
    return write_or_check(PAGE, page, check=args.check, command=COMMAND)


if __name__ == "__main__":
    raise SystemExit(main())
