"""What every request body shares: strict types, no unknown fields, and the same checks in the
OpenAPI document as on the server (`"5"` is no integer, `1` no boolean; a lone surrogate is
refused as `string_unicode`: a 422, never a 500 from the tokenizer).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

# A character that `str.strip()` keeps, spelled out: JSON Schema's `\s` (ECMA-262) and Python's
# whitespace differ (\x1c-\x1f, \x85, \ufeff). As a `pattern` (which searches) it means "not only
# whitespace", which `not_blank` checks on the server.
NOT_BLANK = r"[^\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def not_blank(what: str) -> AfterValidator:
    """Refuses a string that is only whitespace, naming it as `what`."""

    def check(value: str) -> str:
        if not value.strip():
            raise ValueError(f"{what} must contain text, not only whitespace")
        return value

    return AfterValidator(check)


def _integral(value: Any) -> Any:
    # JSON Schema's integer includes 30.0, which strict pydantic would refuse; strings and
    # booleans stay refused.
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[int, BeforeValidator(_integral)]
