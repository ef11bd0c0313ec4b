"""Admin writes on the live index: background reindex jobs, rollback and single-entry edits.

Everything goes through the service's one store. One lock serialises the admin writes of every
worker process (`jobs_store.AdminLock`, a file lock in the jobs directory): a reindex job holds
it from start to finish, so a second reindex, an edit or a rollback meanwhile is refused (409),
on whichever worker it lands, rather than made on a collection the reindex is about to replace.
A CLI build beside the service is serialised by the embedded store's own file lock.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.core.heap import freeze_long_lived, release_free_memory
from app.services.answering import served_calibration
from app.services.index_guard import QDRANT_ERRORS, IndexGuard, retrieval
from app.services.jobs_store import JobRecord, JobStore, Progress, now_iso
from index_builder.faq import FaqItem
from index_builder.indexing.faq_calibration import annotator
from index_builder.indexing.quality_gate import (
    GateReport,
    GoldenQuery,
    QualityGate,
    QualityGateError,
)
from index_builder.model.encoder import Encoder
from index_builder.store import FaqIndexError, Store
from index_builder.store.base import Annotate

log = logging.getLogger(__name__)

# What a best-effort startup cleanup may meet: Qdrant down, the embedded store busy elsewhere.
_RECOVERABLE: tuple[type[BaseException], ...] = (*QDRANT_ERRORS, FaqIndexError)
# Finished job records kept in the jobs directory.
JOBS_KEPT = 100
# A reindex's items -> what it records with the new collection (None: nothing).
Annotator = Callable[[Sequence[FaqItem]], Annotate | None]


class AdminConflictError(RuntimeError):
    """The write cannot happen now (a reindex runs, nothing to roll back to, ...): HTTP 409."""


class ReindexRunningError(AdminConflictError):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(
            f"reindex job {job_id} is running: wait for it (GET /admin/reindex/{job_id})"
        )


class JobStoreError(RuntimeError):
    """The job could not be written down, so it is not started: HTTP 503."""


class ShutdownError(RuntimeError):
    """Raised inside a build to stop it when the service shuts down."""


class AdminService:
    def __init__(
        self,
        encoder: Encoder,
        guard: IndexGuard,
        store: JobStore,
        *,
        gate: QualityGate | None = None,
        batch_size: int = 32,
        lock_timeout_s: float = 10.0,
        annotator: Annotator | None = None,
    ) -> None:
        """`annotator(items)`: what a reindex of `items` records with its new collection (the
        abstain threshold picked for them: `reindex_annotator`)."""
        self.index: Store = guard.store
        self.encoder = encoder
        self.guard = guard
        self.store = store
        self.gate = gate
        self.annotator = annotator
        self.batch_size = batch_size
        self.orphan_min_age_s = self.index.orphan_min_age_s
        self.lock_timeout_s = lock_timeout_s
        self._write_lock = store.lock
        # Guards _active and _thread; never held while waiting for the write lock.
        self._state = threading.Lock()
        self._active: JobRecord | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- startup and shutdown ------------------------------------------------------------------

    def recover(self) -> None:
        """After a restart: fail the jobs a dead process left unfinished, drop orphans. Skipped
        while another worker holds the admin lock: what is unfinished is its own live job."""
        try:
            if not self._write_lock.acquire(0.0):
                log.info("another worker is writing: its jobs and collections are left alone")
                return
        except OSError as exc:
            # Searching does not need the job records; the admin routes say what is wrong.
            log.warning("cannot open the jobs directory %s: %s", self.store.directory, exc)
            return
        try:
            self.store.recover()
            if self.index.orphans(min_age_s=self.orphan_min_age_s):
                self.index.remove_orphans(min_age_s=self.orphan_min_age_s)
        except OSError as exc:
            log.warning("cannot read the job records in %s: %s", self.store.directory, exc)
        except _RECOVERABLE as exc:
            # Not fatal (Qdrant down, the directory held elsewhere): the next reindex cleans up.
            log.warning("could not look for orphaned collections: %s", exc)
        finally:
            self._write_lock.release()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop a running job (its new collection is deleted, the alias stays) and wait for it."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            log.warning("stopping reindex job %s: the service shuts down", thread.name)
            thread.join(timeout_s)

    # --- reindex -------------------------------------------------------------------------------

    def submit(
        self, items: Sequence[FaqItem], *, source: str, source_path: Path | None = None
    ) -> JobRecord:
        """Queue a reindex of `items` and start it in a thread; ReindexRunningError if busy."""
        with self._state:
            self._check_idle()
        try:
            self._take_lock(0.0)  # released by the job's thread when it ends
        except AdminConflictError:
            # No job is unfinished: an edit, or a job that has recorded its end and is letting
            # go of the lock (a client polling it submits again at once): wait as an edit does.
            self._take_lock(self.lock_timeout_s)
        with self._state:
            try:
                self._check_idle()
                return self._start(items, source, source_path)
            except BaseException:
                self._write_lock.release()
                raise

    def _check_idle(self) -> None:
        """ReindexRunningError or a 409 unless this worker can start a job (`_state` held)."""
        if self._active is not None:
            raise ReindexRunningError(self._active.id)
        if self._stop.is_set():
            raise AdminConflictError("the service is shutting down")

    def _take_lock(self, timeout_s: float) -> None:
        """The admin lock, or a 409 naming what holds it (a job of any worker, an edit); a
        jobs directory that cannot hold the lock file is a JobStoreError (503)."""
        try:
            if self._write_lock.acquire(timeout_s):
                return
        except OSError as exc:
            raise JobStoreError(
                f"cannot take the admin lock in {self.store.directory}: {exc}; nothing was done"
            ) from exc
        running = self.store.unfinished()
        if running is not None:
            raise ReindexRunningError(running.id)
        raise AdminConflictError("another admin write is in progress: try again")

    def _start(self, items: Sequence[FaqItem], source: str, source_path: Path | None) -> JobRecord:
        job_id = uuid.uuid4().hex
        record = JobRecord(
            id=job_id,
            state="queued",
            source=source,
            source_path=str(source_path) if source_path else None,
            progress=Progress(total=len(items)),
            created_at=now_iso(),
        )
        try:
            if source == "inline":
                # On disk before the job starts: a crash from here on loses nothing submitted.
                record.items_file = str(self.store.save_items(job_id, items))
            self.store.save(record)
        except OSError as exc:
            raise JobStoreError(
                f"cannot record the job in {self.store.directory}: {exc}; nothing was started"
            ) from exc
        self._active = record
        self._thread = threading.Thread(
            target=self._run, args=(record, list(items)), name=f"reindex-{job_id}", daemon=True
        )
        self._thread.start()
        return record.model_copy(deep=True)

    def job(self, job_id: str) -> JobRecord | None:
        with self._state:
            if self._active is not None and self._active.id == job_id:
                return self._active.model_copy(deep=True)
        return self.store.load(job_id)

    def jobs(self, limit: int = 20) -> list[JobRecord]:
        records = self.store.all()[:limit]
        with self._state:
            active = self._active.model_copy(deep=True) if self._active else None
        return [active if active and r.id == active.id else r for r in records]

    def _update(self, record: JobRecord, *, persist: bool = True, **changes: object) -> None:
        with self._state:
            for key, value in changes.items():
                setattr(record, key, value)
            if persist:
                self.store.save(record)
            if record.state in ("succeeded", "failed") and self._active is record:
                # Once a client can read that the job ended, a new one may start.
                self._active = None

    def _run(self, record: JobRecord, items: list[FaqItem]) -> None:
        created = started = time.perf_counter()
        marks: dict[str, float] = {}

        def on_batch(done: int, total: int) -> None:
            self._update(record, persist=False, progress=Progress(done=done, total=total))
            if done == total:
                marks["embedded"] = time.perf_counter()
            if self._stop.is_set():
                raise ShutdownError("interrupted: the service shut down")

        def validate(collection: str) -> None:
            if self.gate is None:
                return
            t0 = time.perf_counter()
            report: GateReport = self.gate.check(self.index, collection)
            marks["gate"] = time.perf_counter() - t0
            self._update(record, gate=report)
            if not report.passed:
                raise QualityGateError(report)

        annotate = self.annotator(items) if self.annotator is not None else None

        def annotate_timed(collection: str) -> Mapping[str, Any]:
            t0 = time.perf_counter()
            extra = annotate(collection) if annotate is not None else {}
            marks["calibrate"] = time.perf_counter() - t0
            return extra

        try:
            started = time.perf_counter()
            self._update(
                record,
                state="running",
                started_at=now_iso(),
                timings={"queued": round(started - created, 3)},
            )
            removed = self.index.remove_orphans(min_age_s=self.orphan_min_age_s)
            previous = self.index.current_collection()
            self._update(record, removed_orphans=removed, previous_collection=previous)
            info, _ = self.index.build(
                items,
                self.encoder,
                batch_size=self.batch_size,
                progress=False,
                on_batch=on_batch,
                validate=validate,
                annotate=annotate_timed if annotate is not None else None,
            )
            self.guard.invalidate()
            # Before the record says succeeded, so a client that sees it finds it settled: the
            # new version kept out of full GCs, what the build and old version freed given back.

            freeze_long_lived("reindexed")
            release_free_memory()
            self._finish(record, started, marks, state="succeeded", collection=info.collection)
            log.info("reindex job %s: alias now on %s", record.id, info.collection)
        except BaseException as exc:
            if not isinstance(exc, QualityGateError | ShutdownError):
                log.exception("reindex job %s failed", record.id)
            self._finish(record, started, marks, state="failed", error=str(exc) or repr(exc))
        finally:
            with self._state:
                self._active = None
            self._write_lock.release()
            try:
                self.store.prune()
            except OSError as exc:
                log.warning("could not prune old job records: %s", exc)

    def _finish(
        self, record: JobRecord, started: float, marks: dict[str, float], **changes: Any
    ) -> None:
        end = time.perf_counter()
        timings = dict(record.timings)
        if "embedded" in marks:
            timings["embed"] = round(marks["embedded"] - started, 3)
        for step in ("gate", "calibrate"):
            if step in marks:
                timings[step] = round(marks[step], 3)
        if changes.get("state") == "succeeded" and "embedded" in marks:
            checks = marks.get("gate", 0.0) + marks.get("calibrate", 0.0)
            timings["swap"] = round(end - marks["embedded"] - checks, 3)
        timings["total"] = round(end - started, 3)
        self._update(record, finished_at=now_iso(), timings=timings, **changes)

    # --- rollback and edits --------------------------------------------------------------------

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._state:
            if self._active is not None:
                raise ReindexRunningError(self._active.id)
        self._take_lock(self.lock_timeout_s)
        try:
            yield
            self.guard.invalidate()
        finally:
            self._write_lock.release()

    def rollback(self, to: str | None = None) -> tuple[str, str]:
        with self._exclusive():
            return self.index.rollback(to, fingerprint=self.encoder.fingerprint)

    def upsert(self, item: FaqItem) -> tuple[str, bool]:
        with self._exclusive():
            collection, created = self.index.upsert([item], self.encoder)
        return collection, created[0]

    def delete(self, faq_id: str) -> str | None:
        with self._exclusive():
            return self.index.delete(faq_id)


def reindex_annotator(
    settings: Settings, encoder: Encoder, store: Store, items: Sequence[FaqItem]
) -> Annotate | None:
    """What a build of `items` into `store` records in its new collection's metadata: the
    abstain threshold picked for them, the same way in the admin job and in `faq-index build`
    (the served encoder, variant, rule and fusion weights:
    `index_builder.indexing.faq_calibration`). None with FAQ_RECALIBRATE off or no calibrated
    model."""
    if not settings.recalibrate:
        return None
    return annotator(
        store,
        encoder,
        items,
        served_calibration(settings.model_dir, encoder.fingerprint, settings.model_variant),
        retrieval=retrieval(settings).describe(),
    )


def create_admin(
    settings: Settings, encoder: Encoder, guard: IndexGuard, golden: Sequence[GoldenQuery] | None
) -> AdminService:
    """The admin service for the lifespan, after recovering from an earlier process's death."""
    gate = None
    if golden:
        gate = QualityGate(golden, encoder, settings.golden_top_k)
        log.info("reindex quality gate: %d golden queries", len(golden))
    admin = AdminService(
        encoder,
        guard,
        JobStore(settings.jobs_dir, keep=JOBS_KEPT),
        gate=gate,
        annotator=lambda items: reindex_annotator(settings, encoder, guard.store, items),
    )
    admin.recover()
    return admin
