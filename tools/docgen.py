"""What the page generators share (tools/config_docs.py, api_docs.py, bench_docs.py).

A generated page, or a generated part of one between `<!-- generated:NAME:start -->` and
`<!-- generated:NAME:end -->`, is rewritten by its tool and compared by a test, so that what
the docs say about the code and the result files cannot drift from them.
"""

from __future__ import annotations

import sys
import types
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[1]


def markers(name: str) -> tuple[str, str]:
    return f"<!-- generated:{name}:start -->", f"<!-- generated:{name}:end -->"


def replace_between(text: str, name: str, body: str) -> str:
    """`text` with the part between the markers `name` replaced by `body` (markers kept)."""
    start, end = markers(name)
    head, sep, rest = text.partition(start)
    if not sep:
        raise ValueError(f"marker {start} not found")
    _, sep, tail = rest.partition(end)
    if not sep:
        raise ValueError(f"marker {end} not found after {start}")
    return f"{head}{start}\n{body.strip(chr(10))}\n{end}{tail}"


def write_or_check(path: Path, text: str, *, check: bool, command: str) -> int:
    """Write `text` to `path`, or with `check` return 1 (and say so) when `path` differs."""
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if check:
        if current != text:
            print(f"{path.relative_to(ROOT)} is stale: run `{command}`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


def cell(text: str) -> str:
    """Text fit for one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


_JSON_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret string",
    type(None): "null",
    Any: "any",
}


def type_name(tp: Any, *, link: bool = True, drop_none: bool = False) -> str:
    """A type annotation in JSON terms: `string`, `array of string`, `"a" | "b"`, a model name.

    Models are written as markdown links to their heading (`[Name](#name)`) when `link`.
    `drop_none` leaves `null` out of a union (a settings page says "unset" in the default).
    """
    origin = get_origin(tp)
    if origin is Annotated:
        return type_name(get_args(tp)[0], link=link, drop_none=drop_none)
    if origin is Union or origin is types.UnionType:
        members = [a for a in get_args(tp) if not (drop_none and a is type(None))]
        return " or ".join(type_name(a, link=link) for a in members)
    if origin is Literal:
        return " or ".join(f"`{v}`" for v in get_args(tp))
    if origin in (list, tuple, set, frozenset):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        inner = type_name(args[0], link=link) if args else "any"
        return f"array of {inner}"
    if origin is dict:
        key, value = get_args(tp) or (Any, Any)
        return f"object ({type_name(key, link=link)} to {type_name(value, link=link)})"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{tp.__name__.lower()})" if link else tp.__name__
    if isinstance(tp, type) and issubclass(tp, Enum):
        return " or ".join(f"`{m.value}`" for m in tp)
    if tp in _JSON_NAMES:
        return _JSON_NAMES[tp]
    return getattr(tp, "__name__", str(tp))


def constraints(field: FieldInfo) -> str:
    """The bounds a field declares (`>= 1`, `<= 50`, `length 1..128`), comma-separated."""
    found: dict[str, Any] = {}
    for item in field.metadata:
        for attr in ("ge", "gt", "le", "lt", "min_length", "max_length"):
            value = getattr(item, attr, None)
            if value is not None and isinstance(item, annotated_types.BaseMetadata):
                found[attr] = value
    parts = []
    if "ge" in found and "le" in found:
        parts.append(f"{found.pop('ge')} to {found.pop('le')}")
    for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if attr in found:
            parts.append(f"{sign} {found[attr]}")
    low, high = found.get("min_length"), found.get("max_length")
    if low is not None and high is not None:
        parts.append(f"length {low}..{high}")
    elif low is not None:
        parts.append(f"length >= {low}")
    elif high is not None:
        parts.append(f"length <= {high}")
    return ", ".join(parts)
