"""What every request body shares: strict types and no unknown fields.

Strict, so that what the OpenAPI document says is exactly what the server takes: `"5"` is no
integer and `1` no boolean. (A string holding a lone surrogate, which JSON allows and Unicode
does not, is refused by pydantic as `string_unicode`: a 422, never a 500 from the tokenizer.)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
