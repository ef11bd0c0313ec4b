"""Reindex job records as small JSON files, so a job's outcome survives a restart.

`<jobs_dir>/<id>.json` holds the record, rewritten atomically (temporary file + rename) at each
change of state; `<id>.items.jsonl` holds the FAQ items a job was given inline, written before
the job starts, so nothing submitted is lost if the process dies. A record that says queued or
running when the service starts belongs to a job the previous process did not finish.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from index_builder.faq import FaqItem
from index_builder.indexing.quality_gate import GateReport

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed"]
INTERRUPTED = "interrupted by a restart"
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Progress(BaseModel):
    done: int = 0
    total: int = 0


class JobRecord(BaseModel):
    id: str
    state: JobState
    source: str = Field(description='The configured source name, or "inline".')
    source_path: str | None = Field(None, description="The FAQ file a named source read.")
    items_file: str | None = Field(
        None, description="Where the items submitted inline are kept (to resubmit them)."
    )
    progress: Progress = Field(default_factory=Progress)
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    timings: dict[str, float] = Field(
        default_factory=dict, description="Seconds: queued, embed, gate, swap, total."
    )
    previous_collection: str | None = Field(None, description="The alias target before.")
    collection: str | None = Field(None, description="The collection this job built.")
    removed_orphans: list[str] = Field(default_factory=list)
    gate: GateReport | None = Field(None, description="null when no golden queries are set.")
    error: str | None = None


class AdminLock:
    """Admin writes one at a time, across this worker's threads and across worker processes:
    a thread lock, then `flock` on `<jobs_dir>/.admin.lock`. The kernel drops a file lock when
    its holder dies (SIGKILL included), so a dead worker never leaves it held. Not reentrant;
    a reindex takes it in the request thread and its job thread releases it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()
        self._handle: Any = None

    def acquire(self, timeout_s: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout_s
        if not self._thread_lock.acquire(timeout=timeout_s):
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+b")  # noqa: SIM115 - held until release()
        except OSError:
            self._thread_lock.release()
            raise
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._handle = handle
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    self._thread_lock.release()
                    return False
                time.sleep(0.05)

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()  # closing the file releases the flock
        self._thread_lock.release()


class JobStore:
    def __init__(self, directory: Path, keep: int = 100) -> None:
        # Created on the first write: a service whose admin routes are off never needs it.
        self.directory = directory
        self.keep = keep
        self.lock = AdminLock(directory / ".admin.lock")

    def _record_path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.json"

    def items_path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.items.jsonl"

    def _write(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # The rename is atomic: a reader (or the next process) sees the old file or the new one.
        os.replace(tmp, path)

    def save(self, record: JobRecord) -> None:
        self._write(self._record_path(record.id), record.model_dump_json(indent=2) + "\n")

    def save_items(self, job_id: str, items: Sequence[FaqItem]) -> Path:
        path = self.items_path(job_id)
        self._write(path, "".join(i.model_dump_json() + "\n" for i in items))
        return path

    def load(self, job_id: str) -> JobRecord | None:
        if not _JOB_ID.match(job_id):
            return None
        path = self._record_path(job_id)
        try:
            return JobRecord.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValidationError, json.JSONDecodeError) as exc:
            log.warning("unreadable job record %s: %s", path, exc)
            return None

    def all(self) -> list[JobRecord]:
        """Every readable record, newest first."""
        records = [self.load(path.stem) for path in self.directory.glob("*.json")]
        return sorted(filter(None, records), key=lambda r: r.created_at, reverse=True)

    def unfinished(self) -> JobRecord | None:
        """A job some worker has queued or is running, if any."""
        return next((r for r in self.all() if r.state in ("queued", "running")), None)

    def recover(self) -> list[JobRecord]:
        """Mark the jobs a previous process left queued or running as failed. Only with the
        admin lock held: a job another live worker runs holds it, and is not touched."""
        interrupted = [r for r in self.all() if r.state in ("queued", "running")]
        for record in interrupted:
            was = "running" if record.started_at else "queued"
            record.state = "failed"
            record.error = INTERRUPTED
            record.finished_at = now_iso()
            self.save(record)
            log.warning(
                "reindex job %s was %s when the service stopped: marked failed%s",
                record.id,
                was,
                f"; its items are kept in {record.items_file}" if record.items_file else "",
            )
        return interrupted

    def prune(self) -> None:
        """Keep the newest `keep` finished records (and their items files)."""
        finished = [r for r in self.all() if r.state in ("succeeded", "failed")]
        for record in finished[self.keep :]:
            for path in (self._record_path(record.id), self.items_path(record.id)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
