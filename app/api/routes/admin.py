"""Admin routes (admin API key): background reindex, rollback, single-entry FAQ edits.

Sync routes: they block on Qdrant and the encoder, so FastAPI runs them in its threadpool.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Body
from fastapi import Path as PathParam
from pydantic import ValidationError

from app.api.deps import AdminAuth, AdminDep, SettingsDep
from app.api.errors import ApiError
from app.api.responses import OrjsonResponse, errors
from app.api.schemas.admin import (
    CollectionOut,
    FaqEdit,
    FaqEditResult,
    ReindexRequest,
    RollbackRequest,
    RollbackResponse,
)
from app.api.schemas.base import NOT_BLANK, not_blank
from app.services.index_guard import QDRANT_ERRORS
from app.services.jobs_store import JobRecord
from app.services.reindex import AdminConflictError, JobStoreError
from index_builder.faq import FaqFileError, FaqItem, read_faq
from index_builder.store import FaqIndexError, UnknownCollectionError

router = APIRouter(prefix="/admin", tags=["admin"])

_QDRANT_DOWN = "Qdrant is unreachable: retry after Retry-After seconds."
_BUSY = "A reindex or another write is running, or the index is held elsewhere."


FaqId = Annotated[
    str,
    PathParam(
        max_length=128,
        description="The entry's id (may contain `/`; spaces around it are dropped).",
        json_schema_extra={"pattern": NOT_BLANK},
    ),
    not_blank("the id"),
]


@contextmanager
def _write_errors() -> Iterator[None]:
    """The admin service's refusals as API errors: 404 for a collection that is not kept, 409
    when the write cannot happen now, 503 while Qdrant is unreachable."""
    try:
        yield
    except UnknownCollectionError as exc:
        raise ApiError(404, str(exc)) from exc
    except (AdminConflictError, FaqIndexError) as exc:
        raise ApiError(409, str(exc)) from exc
    except QDRANT_ERRORS as exc:
        raise ApiError(503, f"Qdrant is unreachable: {exc}", headers={"Retry-After": "5"}) from exc
    except JobStoreError as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "30"}) from exc


@router.post(
    "/reindex",
    status_code=202,
    response_model=JobRecord,
    responses={
        202: {
            "description": "Accepted: the job runs in the background.",
            "headers": {
                "Location": {
                    "description": "The job's URL (GET it for its state).",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        },
        **errors(
            401,
            403,
            413,
            s409="A reindex is already running (or the service is shutting down).",
            s422="The body breaks the schema, or the named source cannot be read.",
            s503="The job could not be recorded (FAQ_JOBS_DIR): retry after Retry-After.",
        ),
    },
)
def reindex(
    _: AdminAuth, body: ReindexRequest, admin: AdminDep, settings: SettingsDep
) -> OrjsonResponse:
    """Start a reindex in the background: new collection, quality gate, atomic alias swap."""
    source, source_path = body.named_source, None
    if source is not None:
        sources = settings.reindex_sources
        if source not in sources:
            known = ", ".join(sorted(sources)) or "none (set FAQ_REINDEX_SOURCES)"
            raise ApiError(422, f"unknown source {source!r}; configured sources: {known}")
        source_path = sources[source]
        try:
            items = read_faq(source_path)
        except FaqFileError as exc:
            raise ApiError(422, f"source {source!r} cannot be indexed: {exc}") from exc
    else:
        items = [FaqItem.model_validate(e.faq_item(e.id)) for e in body.items]
    with _write_errors():
        record = admin.submit(items, source=source or "inline", source_path=source_path)
    location = {"Location": f"/admin/reindex/{record.id}"}
    return OrjsonResponse(record.model_dump(mode="json"), status_code=202, headers=location)


@router.get("/reindex", response_model=list[JobRecord], responses=errors(401, 403))
def reindex_jobs(_: AdminAuth, admin: AdminDep) -> OrjsonResponse:
    """The most recent reindex jobs, newest first."""
    return OrjsonResponse([r.model_dump(mode="json") for r in admin.jobs()])


@router.get(
    "/reindex/{job_id}",
    response_model=JobRecord,
    responses=errors(401, 403, s404="No job with this id."),
)
def reindex_job(job_id: str, _: AdminAuth, admin: AdminDep) -> OrjsonResponse:
    """State, progress, timings, the collection built, the gate's results, the error."""
    record = admin.job(job_id)
    if record is None:
        raise ApiError(404, f"no reindex job {job_id}")
    return OrjsonResponse(record.model_dump(mode="json"))


@router.post(
    "/rollback",
    response_model=RollbackResponse,
    responses=errors(
        401,
        403,
        413,
        422,
        s404="The named collection is not among the kept ones.",
        s409="Nothing to roll back to, the collection is already live, or a write is running.",
        s503=_QDRANT_DOWN,
    ),
)
def rollback(
    _: AdminAuth, admin: AdminDep, body: Annotated[RollbackRequest | None, Body()] = None
) -> OrjsonResponse:
    """Move the alias back to the previous kept collection, or to the one named."""
    with _write_errors():
        previous, current = admin.rollback(body.collection if body else None)
    return OrjsonResponse({"previous": previous, "current": current})


@router.get(
    "/collections",
    response_model=list[CollectionOut],
    responses=errors(401, 403, s409=_BUSY, s503=_QDRANT_DOWN),
)
def collections(_: AdminAuth, admin: AdminDep) -> OrjsonResponse:
    """The kept collections behind the alias, oldest first."""
    with _write_errors():
        kept = admin.index.collections()
    return OrjsonResponse(
        [{k: f[k] for k in CollectionOut.model_fields} for f in map(asdict, kept)]
    )


@router.put(
    "/faq/{faq_id:path}",
    response_model=FaqEditResult,
    responses={
        200: {"description": "Replaced."},
        201: {"model": FaqEditResult, "description": "Added: no entry had this id."},
        **errors(401, 403, 413, 422, s409=_BUSY, s503=_QDRANT_DOWN),
    },
)
def put_faq(_: AdminAuth, faq_id: FaqId, body: FaqEdit, admin: AdminDep) -> OrjsonResponse:
    """Add or replace one entry (201 when it is new): a new version, the live one with this
    change, goes live; a rollback undoes it."""
    try:
        item = FaqItem.model_validate(body.faq_item(faq_id))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, f"invalid FAQ entry: {problems}") from exc
    with _write_errors():
        collection, created = admin.upsert(item)
    return OrjsonResponse(
        {"id": item.id, "collection": collection, "created": created, "deleted": False},
        status_code=201 if created else 200,
    )


@router.delete(
    "/faq/{faq_id:path}",
    response_model=FaqEditResult,
    responses=errors(
        401,
        403,
        422,
        s404="No entry with this id in the live index.",
        s409=_BUSY,
        s503=_QDRANT_DOWN,
    ),
)
def delete_faq(_: AdminAuth, faq_id: FaqId, admin: AdminDep) -> OrjsonResponse:
    """Remove one entry: a new version without it goes live (a rollback undoes it); 404 when
    it is not there."""
    with _write_errors():
        collection = admin.delete(faq_id)
    if collection is None:
        raise ApiError(404, f"no FAQ entry {faq_id!r} in the live index")
    return OrjsonResponse(
        {"id": faq_id, "collection": collection, "created": False, "deleted": True}
    )
