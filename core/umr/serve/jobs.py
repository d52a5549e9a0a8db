"""Indexing jobs: uploaded files are indexed one job at a time in a background thread, with progress."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from umr.documents import safe_display

logger = logging.getLogger(__name__)

_KEEP_FINISHED = 200


def _page_count(path: Path) -> int:
    """Pages of a PDF (1 for an image); 1 when the file cannot be opened (indexing will report why)."""
    if path.suffix.lower() != ".pdf":
        return 1
    try:
        import pymupdf

        with pymupdf.open(str(path)) as doc:
            return max(1, int(doc.page_count))
    except Exception:  # a broken PDF: the indexer reports it as a failed file
        return 1


@dataclass
class Job:
    id: str
    files: list[Path]
    names: list[str]
    status: str = "queued"  # queued, running, done, failed
    total_pages: int = 0
    pages_done: int = 0
    pages_added: int = 0
    pages_skipped: int = 0
    files_done: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.status == "done":
            progress = 1.0
        elif self.total_pages:
            progress = min(0.99, self.pages_done / self.total_pages)
        else:
            progress = 0.0
        return {
            "id": self.id,
            "status": self.status,
            "progress": round(progress, 4),
            "files": self.names,
            "files_total": len(self.files),
            "files_done": self.files_done,
            "pages_total": self.total_pages,
            "pages_done": self.pages_done,
            "pages_added": self.pages_added,
            "pages_skipped": self.pages_skipped,
            "failed": self.failed,
            "error": self.error,
            "created": self.created,
            "finished": self.finished,
        }


class JobRunner:
    """Runs ``store.add_files`` for each job, in submission order, on one thread."""

    def __init__(self, store: Any, on_change: Any | None = None) -> None:
        self.store = store
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[Job] = []
        self._closed = False
        self._on_change = on_change
        self._thread = threading.Thread(target=self._loop, name="umr-serve-jobs", daemon=True)
        self._thread.start()

    def submit(self, files: list[Path], names: list[str]) -> Job:
        job = Job(id=uuid.uuid4().hex[:16], files=files, names=names)
        job.total_pages = sum(_page_count(f) for f in files)
        with self._lock:
            self.jobs[job.id] = job
            while len(self.jobs) > _KEEP_FINISHED:
                oldest = next(iter(self.jobs.values()))
                if oldest.status not in ("done", "failed"):
                    break
                self.jobs.popitem(last=False)
            self._pending.append(job)
            self._wake.notify()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)

    def active(self) -> int:
        with self._lock:
            return sum(1 for j in self.jobs.values() if j.status in ("queued", "running"))

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                job = self._pending.pop(0)
            self._run(job)

    def _run(self, job: Job) -> None:
        job.status = "running"

        def progress(report: Any, record: Any) -> None:
            job.pages_added = report.pages_added
            job.pages_skipped = report.pages_skipped
            job.pages_done = report.pages_added + report.pages_skipped
            job.files_done = report.files_done + len(report.failed)

        try:
            report = self.store.add_files([str(f) for f in job.files], progress=progress)
        except Exception as exc:
            logger.exception("indexing job %s failed", job.id)
            job.status = "failed"
            job.error = f"{type(exc).__name__}: {exc}"
        else:
            progress(report, None)
            job.failed = [{"source": safe_display(e.source), "reason": str(e.reason)} for e in report.failed]
            job.pages_done = max(job.pages_done, job.total_pages - len(job.failed))
            job.status = "done"
            accounted = report.files_indexed + report.files_skipped + len(report.failed)
            if accounted < len(job.files):
                job.error = (f"{len(job.files) - accounted} file(s) were not indexed; is the upload folder inside "
                             "the store's folder?")
        job.finished = time.time()
        if self._on_change is not None:
            self._on_change(job)
