"""An analysis's results for the UI: the report files of its output tarball, extracted once and cached.

The cache is a folder per output file URI (a run's URI never changes: each run writes under its
own run folder) in ``$PERILFLOW_UI_CACHE_DIR`` (default ``<tmp>/perilflow-ui-cache``). Only the
files :mod:`perilflow.report` reads (ALT, EPT, summary-info) are extracted, flattened into the
folder, which appears complete or not at all (extracted under a temporary name, then renamed).
Parsed results are kept in memory for the last few URIs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import threading
import uuid
from collections import OrderedDict
from pathlib import Path, PurePosixPath
from typing import Any

from perilflow.kernel.storage import TAR_READ_ERRORS, StorageError, safe_tar_members
from perilflow.plugins.api import files
from perilflow.plugins.settings import ApiSettings
from perilflow.report import Results, is_report_file, read_results

#: Parsed results kept in memory (by URI and analysis settings).
MEMORY_ENTRIES = 16
_memory: OrderedDict[str, Results] = OrderedDict()
_lock = threading.Lock()


class ResultsUnavailable(Exception):
    """The analysis's results cannot be shown; the message says why and what to do."""


def cache_dir() -> Path:
    """Where extracted results live: ``$PERILFLOW_UI_CACHE_DIR``, else ``<tmp>/perilflow-ui-cache``."""
    return Path(os.environ.get("PERILFLOW_UI_CACHE_DIR") or Path(tempfile.gettempdir()) / "perilflow-ui-cache")


# ALT/EPT/summary-info files are small (a row per summary id, return period and sample type); a member named
# like one but larger than this is refused rather than written to the cache (a crafted or broken archive).
MAX_REPORT_FILE_BYTES = 256 * 1024 * 1024


def _extract_report_files(archive_path: Path, target: Path) -> int:
    """Write the report files of the tarball into ``target`` (flat); returns how many."""
    count = 0
    with tarfile.open(archive_path, "r:*") as archive:
        for member in safe_tar_members(archive, "output file"):
            name = PurePosixPath(member.name).name
            if not member.isfile() or not is_report_file(name) or (target / name).exists():
                continue
            if member.size > MAX_REPORT_FILE_BYTES:
                raise ResultsUnavailable(f"{member.name} in the output file is {member.size:,} bytes, more than a "
                                         f"results file can be ({MAX_REPORT_FILE_BYTES:,}); download the outputs "
                                         "instead")
            source = archive.extractfile(member)
            if source is None:
                continue
            with source, (target / name).open("wb") as out:
                shutil.copyfileobj(source, out, files.CHUNK)
            count += 1
    return count


def extracted_folder(settings: ApiSettings, uri: str) -> Path:
    """The cache folder holding the report files of the output tarball at ``uri`` (extracting it if needed)."""
    root = cache_dir()
    folder = root / hashlib.sha256(uri.encode()).hexdigest()[:32]
    if folder.is_dir():
        return folder
    if not files.storage_path(settings, uri).exists():
        raise ResultsUnavailable(f"the output file is no longer in storage ({uri}); run the analysis again")
    root.mkdir(parents=True, exist_ok=True)
    scratch = root / f".{folder.name}.{uuid.uuid4().hex}.tmp"
    scratch.mkdir()
    try:
        with files.local_copy(settings, uri, "output.tar.gz") as local:
            found = _extract_report_files(local, scratch)
        if not found:
            raise ResultsUnavailable("the output file holds no ALT or EPT file; turn on alt_period and "
                                     "ept_full_uncertainty_oep/aep in the analysis settings and run again")
        try:
            scratch.rename(folder)
        except OSError:  # another request extracted it first
            if not folder.is_dir():
                raise
    except (*TAR_READ_ERRORS, StorageError) as exc:
        raise ResultsUnavailable(f"the output file is not a readable tar archive ({exc})") from None
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return folder


def load_results(settings: ApiSettings, uri: str, analysis_settings: dict[str, Any] | None = None) -> Results:
    """The parsed results of the output tarball at ``uri`` (cached on disk and in memory)."""
    key = json.dumps([uri, analysis_settings], sort_keys=True, default=str)
    with _lock:
        if key in _memory:
            _memory.move_to_end(key)
            return _memory[key]
    folder = extracted_folder(settings, uri)
    try:
        results = read_results(folder, analysis_settings)
    except (FileNotFoundError, ValueError) as exc:
        raise ResultsUnavailable(str(exc)) from None
    with _lock:
        _memory[key] = results
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)
    return results
