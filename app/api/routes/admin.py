"""Admin routes (admin API key): background reindex, rollback, single-entry FAQ edits.

Sync routes: they make blocking Qdrant calls and run the encoder, so FastAPI runs them in its
threadpool and the event loop stays free for /health.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.api.deps import AdminDep, SettingsDep
from app.api.errors import ApiError
from app.core.security import AdminAuth
from app.services.index_guard import QDRANT_ERRORS
from app.services.jobs_store import JobRecord
from app.services.reindex import AdminConflictError, JobStoreError
from index_builder.faq import FaqFileError, FaqItem, read_faq
from index_builder.store import FaqIndexError, UnknownCollectionError

router = APIRouter(prefix="/admin", tags=["admin"])


class ReindexRequest(BaseModel):
    """Either the FAQ entries themselves or the name of a configured FAQ file."""

    model_config = ConfigDict(extra="forbid")

    items: list[FaqItem] | None = Field(
        None, min_length=1, description="The whole new FAQ: the live content is replaced by it."
    )
    source: str | None = Field(
        None, min_length=1, description="A name from FAQ_REINDEX_SOURCES.", examples=["default"]
    )

    @field_validator("items")
    @classmethod
    def _unique_ids(cls, items: list[FaqItem] | None) -> list[FaqItem] | None:
        if items:
            dupes = [i for i, n in Counter(item.id for item in items).items() if n > 1]
            if dupes:
                raise ValueError(f"duplicate FAQ ids: {', '.join(sorted(dupes))}")
        return items

    @model_validator(mode="after")
    def _one_of(self) -> ReindexRequest:
        if (self.items is None) == (self.source is None):
            raise ValueError('give either "items" or "source", not both or neither')
        return self


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: str | None = Field(
        None,
        description="A kept collection to move the alias to; default: the one before the live.",
        examples=["faq_v3"],
    )


class RollbackResponse(BaseModel):
    previous: str = Field(description="The alias target before the rollback.")
    current: str = Field(description="The alias target now.")


class CollectionOut(BaseModel):
    name: str
    version: int
    points: int
    state: str = Field(description="ready, or building (a build in progress or killed).")
    fingerprint: str
    content_hash: str = Field(description="Empty once the collection was edited by PUT/DELETE.")
    created_at: str
    live: bool


class FaqEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="Ignored: the id in the path wins.")
    question: str
    answer: str
    lang: str
    market: str | None = None
    tags: list[str] = Field(default_factory=list)


class FaqEditResult(BaseModel):
    id: str
    collection: str = Field(description="The live collection that was changed.")
    created: bool = False
    deleted: bool = False


@contextmanager
def _write_errors() -> Iterator[None]:
    """The admin service's refusals as API errors: 422 for an unknown collection, 409 when the
    write cannot happen now, 503 while Qdrant is unreachable."""
    try:
        yield
    except UnknownCollectionError as exc:
        raise ApiError(422, str(exc)) from exc
    except (AdminConflictError, FaqIndexError) as exc:
        raise ApiError(409, str(exc)) from exc
    except QDRANT_ERRORS as exc:
        raise ApiError(503, f"Qdrant is unreachable: {exc}", headers={"Retry-After": "5"}) from exc


@router.post("/reindex", status_code=202, response_model=JobRecord)
def reindex(
    _: AdminAuth, body: ReindexRequest, admin: AdminDep, settings: SettingsDep, response: Response
) -> JobRecord:
    """Start a reindex in the background: new collection, quality gate, atomic alias swap."""
    source_path: Path | None = None
    if body.source is not None:
        sources = settings.reindex_sources
        if body.source not in sources:
            known = ", ".join(sorted(sources)) or "none (set FAQ_REINDEX_SOURCES)"
            raise ApiError(422, f"unknown source {body.source!r}; configured sources: {known}")
        source_path = sources[body.source]
        try:
            items = read_faq(source_path)
        except FaqFileError as exc:
            raise ApiError(422, f"source {body.source!r} cannot be indexed: {exc}") from exc
    else:
        items = body.items or []
    try:
        record = admin.submit(items, source=body.source or "inline", source_path=source_path)
    except AdminConflictError as exc:
        raise ApiError(409, str(exc)) from exc
    except JobStoreError as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "30"}) from exc
    location = f"/admin/reindex/{record.id}"
    response.headers["Location"] = location
    return record


@router.get("/reindex", response_model=list[JobRecord])
def reindex_jobs(_: AdminAuth, admin: AdminDep) -> list[JobRecord]:
    """The most recent reindex jobs, newest first."""
    return admin.jobs()


@router.get("/reindex/{job_id}", response_model=JobRecord)
def reindex_job(job_id: str, _: AdminAuth, admin: AdminDep) -> JobRecord:
    """State, progress, timings, the collection built, the gate's results, the error."""
    record = admin.job(job_id)
    if record is None:
        raise ApiError(404, f"no reindex job {job_id}")
    return record


@router.post("/rollback", response_model=RollbackResponse)
def rollback(
    _: AdminAuth, admin: AdminDep, body: RollbackRequest | None = None
) -> RollbackResponse:
    """Move the alias back to the previous kept collection, or to the one named."""
    with _write_errors():
        previous, current = admin.rollback(body.collection if body else None)
    return RollbackResponse(previous=previous, current=current)


@router.get("/collections", response_model=list[CollectionOut])
def collections(_: AdminAuth, admin: AdminDep) -> list[CollectionOut]:
    """The kept collections behind the alias, oldest first."""
    with _write_errors():
        kept = admin.collections()
    return [CollectionOut(**vars(c)) for c in kept]


@router.put("/faq/{faq_id}", response_model=FaqEditResult)
def put_faq(
    _: AdminAuth, faq_id: str, body: FaqEdit, admin: AdminDep, response: Response
) -> FaqEditResult:
    """Add or replace one entry in the live collection (201 when it is new)."""
    try:
        item = FaqItem.model_validate({**body.model_dump(exclude={"id"}), "id": faq_id})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, f"invalid FAQ entry: {problems}") from exc
    with _write_errors():
        collection, created = admin.upsert(item)
    if created:
        response.status_code = 201
    return FaqEditResult(id=item.id, collection=collection, created=created)


@router.delete("/faq/{faq_id}", response_model=FaqEditResult)
def delete_faq(_: AdminAuth, faq_id: str, admin: AdminDep) -> FaqEditResult:
    """Remove one entry from the live collection; 404 when it is not there."""
    with _write_errors():
        collection = admin.delete(faq_id)
    if collection is None:
        raise ApiError(404, f"no FAQ entry {faq_id!r} in the live index")
    return FaqEditResult(id=faq_id, collection=collection, deleted=True)
