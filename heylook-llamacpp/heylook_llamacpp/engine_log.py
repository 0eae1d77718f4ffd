"""What is left behind when an in-process engine takes heylook down with it.

llama.cpp runs inside heylook's process: an illegal instruction or a segmentation fault in it ends the process, and
no Python code runs after that. So before the engine runs, heylook

* turns on :mod:`faulthandler` (once per process), which prints every thread's Python stack on SIGILL, SIGSEGV,
  SIGBUS, SIGFPE and SIGABRT;
* logs one line naming the model, the engine and the build;
* leaves a note, ``<cache>/logs/engine-<pid>.json``, that a clean unload or exit removes. ``heylookllm doctor``
  reports notes whose process is gone (that process died with the model loaded) and deletes them.
"""

from __future__ import annotations

import atexit
import faulthandler
import json
import logging
import os
import time
from pathlib import Path

from heylook_llamacpp import ggml_build

logger = logging.getLogger("heylook_llamacpp")

_models: dict[str, dict[str, object]] = {}


def _note_path(pid: int | None = None) -> Path:
    return ggml_build.cache_root() / "logs" / f"engine-{pid or os.getpid()}.json"


def _write() -> None:
    path = _note_path()
    try:
        if not _models:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps({"pid": os.getpid(), "models": _models}, indent=2), encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:  # a read-only cache must not stop a model from loading
        logger.debug("cannot write %s: %s", path, error)


def _clear() -> None:
    _models.clear()
    _write()


def engine_loading(model_id: str, build: str) -> None:
    """Call before the engine first runs for ``model_id``; ``build`` describes the llama.cpp build."""
    if not faulthandler.is_enabled():
        faulthandler.enable(all_threads=True)
        atexit.register(_clear)
    logger.info(
        "model '%s' runs in-process on llama.cpp (%s); if the engine faults (SIGILL, SIGSEGV) it ends heylook: "
        "the stacks follow on stderr, and 'heylookllm doctor' smoke-tests this build",
        model_id,
        build,
    )
    _models[model_id] = {"engine": "llama.cpp", "build": build, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write()


def engine_unloaded(model_id: str) -> None:
    if _models.pop(model_id, None) is not None:
        _write()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_engines(remove: bool = True) -> list[str]:
    """One line per heylook process that ended while a llama.cpp model was loaded (its note was left behind)."""
    lines = []
    for path in sorted((ggml_build.cache_root() / "logs").glob("engine-*.json")):
        try:
            note = json.loads(path.read_text(encoding="utf-8"))
            pid = int(note["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        for model_id, facts in note.get("models", {}).items():
            lines.append(
                f"heylook pid {pid} ended without unloading model '{model_id}' ({facts.get('engine')}, "
                f"{facts.get('build')}, loaded {facts.get('since')}): an engine crash, or the process was killed"
            )
        if remove:
            path.unlink(missing_ok=True)
    return lines
