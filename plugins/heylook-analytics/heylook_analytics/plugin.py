"""The analytics plugin's entry point module: a worked example of ``wrap_generation`` middleware.

Every chat or completion generation passes through :func:`wrap_generation`'s wrapper, which hands each delta on
unchanged as soon as it arrives, notes the time to the first delta, reads ``usage`` and ``finish_reason`` from the
last one, and when the generation ends (finished, failed or cancelled) queues one row for the database. It stores
no prompt, reply or header: only counts, timings and the outcome.

The module stays light: DuckDB is imported in :func:`startup` (through :mod:`heylook_analytics.store`) and in the
``heylookllm analytics`` command, never when the plugin loads.

Settings come from the environment:

- ``HEYLOOK_ANALYTICS_DB``: the DuckDB file (default ``analytics.duckdb`` in ``platformdirs.user_data_dir("heylook")``).
- ``HEYLOOK_ANALYTICS=0``: record nothing (the routes then answer ``"enabled": false``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query

from heylook_core import Delta, GenerationContext, hookimpl, require_api_key

if TYPE_CHECKING:
    from heylook_analytics.store import Recorder
    from heylook_core import CallNext, Usage, Wrapper

HEYLOOK_CONTRACT = ">=1,<2"  # the heylook plugin contract versions this plugin supports (docs/plugins.md)

logger = logging.getLogger(__name__)

MAX_HOURS = 24 * 366
MAX_RECENT = 1000

_recorder: Recorder | None = None  # set by startup while recording is on
_not_recording: str | None = None  # why recording is off, for the routes


def enabled() -> bool:
    return os.environ.get("HEYLOOK_ANALYTICS", "1").strip().lower() not in ("0", "false", "no", "off")


def database_path() -> Path:
    configured = os.environ.get("HEYLOOK_ANALYTICS_DB")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("heylook")) / "analytics.duckdb"


# -- server lifetime -----------------------------------------------------------------------------------------------


@hookimpl
def startup() -> None:
    """Open the database (creating it and its folder if missing) and start the writer thread.

    DuckDB lets one process open a file for writing. A second server on the same file logs an error naming the
    file and the holder, and serves without analytics (the routes say why).
    """
    global _recorder, _not_recording
    _not_recording = None
    if not enabled():
        _not_recording = "turned off (HEYLOOK_ANALYTICS=0)"
        logger.info("analytics: off (HEYLOOK_ANALYTICS=0)")
        return
    import duckdb

    from heylook_analytics.store import Recorder

    path = database_path()
    try:
        _recorder = Recorder(path)
    except duckdb.IOException as error:
        if "lock" not in str(error).lower():
            raise
        _not_recording = "the database is in use by another process"
        logger.error(
            "analytics: %s is in use by another process, so this server records no analytics; give each server "
            "its own HEYLOOK_ANALYTICS_DB (%s)",
            path,
            error,
        )
        return
    logger.info("analytics: recording to %s", _recorder.path)


@hookimpl
async def shutdown() -> None:
    """Write the rows still queued and close the database, off the event loop."""
    global _recorder
    recorder, _recorder = _recorder, None
    if recorder is not None:
        await asyncio.to_thread(recorder.close)


# -- the middleware ------------------------------------------------------------------------------------------------


@hookimpl
def wrap_generation(request: Any, context: GenerationContext) -> Wrapper | None:
    recorder = _recorder
    if recorder is None:
        return None  # recording is off: no wrapper, no cost

    async def wrapper(request: Any, call_next: CallNext) -> AsyncIterator[Delta]:
        started = time.perf_counter()
        first: float | None = None
        usage: Usage | None = None
        finish: str | None = None
        status, error = "ok", None
        try:
            async for delta in call_next(request):
                if first is None:
                    first = time.perf_counter()
                if delta.usage is not None:
                    usage = delta.usage
                if delta.finish_reason is not None:
                    finish = delta.finish_reason
                yield delta  # one at a time, unchanged: the stream is never buffered
        except (GeneratorExit, asyncio.CancelledError):
            # The client went away (the stream was closed or its task cancelled) before the generation finished.
            if finish is None:
                status = "cancelled"
            raise
        except Exception as failure:
            status, error = "error", failure
            raise  # the request fails the way it would without this plugin
        finally:
            ended = time.perf_counter()
            try:
                recorder.record(_row(context, started, first, ended, usage, finish, status, error))
            except Exception:  # analytics must never fail a request
                logger.exception("analytics: could not record request %s", context.request_id)

    return wrapper


def _row(
    context: GenerationContext,
    started: float,
    first: float | None,
    ended: float,
    usage: Usage | None,
    finish: str | None,
    status: str,
    error: BaseException | None,
) -> dict[str, Any]:
    duration_ms = (ended - started) * 1000
    completion = usage.completion_tokens if usage is not None else None
    return {
        "ts": datetime.now(timezone.utc).replace(tzinfo=None),  # naive UTC, as the ts column stores it
        "request_id": context.request_id,
        "model_id": context.model_id,
        "provider": context.provider,
        "endpoint": context.endpoint,
        "stream": context.stream,
        "prompt_tokens": usage.prompt_tokens if usage is not None else None,
        "completion_tokens": completion,
        "cached_tokens": usage.cached_tokens if usage is not None else None,
        "finish_reason": finish,
        "ttft_ms": (first - started) * 1000 if first is not None else None,
        "duration_ms": duration_ms,
        "tokens_per_s": completion / (duration_ms / 1000) if completion is not None and duration_ms > 0 else None,
        "status": status,
        "error_type": type(error).__name__ if error is not None else None,
        "error_message": str(error)[:500] if error is not None else None,
        "api_key": getattr(context, "api_key", None),  # the key's name, never the key
    }


# -- HTTP routes ---------------------------------------------------------------------------------------------------


@hookimpl
def register_routes(router: APIRouter) -> None:
    # With API keys required ([server] api_keys), the routes need one: rows carry request ids and error text.
    keyed = [Depends(require_api_key)]

    @router.get("/-/analytics", tags=["analytics"], dependencies=keyed)
    async def analytics_summary(
        hours: float = Query(24.0, gt=0, le=MAX_HOURS, description="how far back to look"),
    ) -> dict[str, Any]:
        """Per model: requests, errors, cancellations, tokens, median and p95 TTFT and tokens/s."""
        recorder = _recorder
        if recorder is None:
            return {"enabled": False, "reason": _not_recording, "hours": hours, "models": []}
        return {"enabled": True, **await asyncio.to_thread(recorder.summary, hours)}

    @router.get("/-/analytics/recent", tags=["analytics"], dependencies=keyed)
    async def analytics_recent(
        limit: int = Query(50, ge=1, le=MAX_RECENT, description="how many rows, newest first"),
    ) -> dict[str, Any]:
        """The most recent recorded generations, newest first."""
        recorder = _recorder
        if recorder is None:
            return {"enabled": False, "reason": _not_recording, "data": []}
        return {"enabled": True, "data": await asyncio.to_thread(recorder.recent, limit)}


# -- the heylookllm analytics command ------------------------------------------------------------------------------


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= MAX_HOURS:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_HOURS}")
    return value


@hookimpl
def register_commands(cli: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = cli.add_parser("analytics", help="summarise recorded requests per model (reads the analytics database)")
    parser.add_argument("--hours", type=_hours, default=24.0, help="how far back to look (default 24)")
    parser.add_argument("--json", action="store_true", help="print JSON, as GET /-/analytics does")
    parser.add_argument("--db", default=None, help="database file (default HEYLOOK_ANALYTICS_DB or the user data dir)")
    parser.set_defaults(handler=analytics_command)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def analytics_command(args: argparse.Namespace) -> int:
    path = Path(args.db).expanduser() if args.db else database_path()
    if not path.exists():
        sys.stderr.write(f"no analytics database at {path}\n")
        return 1
    import duckdb

    from heylook_analytics.store import open_read_only, summary

    try:
        connection = open_read_only(path)
    except duckdb.Error as error:
        sys.stderr.write(f"cannot open {path} read-only: {error} (DuckDB lets one process write at a time)\n")
        return 1
    try:
        result = {"database": str(path), **summary(connection, args.hours)}
    finally:
        connection.close()
    if args.json:
        _out(json.dumps(result, indent=2))
        return 0
    _out(f"{path}, last {args.hours:g} h")
    _out(
        f"{'model':<24} {'requests':>8} {'errors':>6} {'cancel':>6} {'tokens':>9} "
        f"{'ttft ms p50':>11} {'p95':>8} {'tok/s p50':>10} {'p95':>8}"
    )
    for model in result["models"]:
        _out(
            f"{model['model']:<24} {model['requests']:>8} {model['errors']:>6} {model['cancelled']:>6} "
            f"{model['total_tokens']:>9} {_fmt(model['ttft_ms']['median']):>11} {_fmt(model['ttft_ms']['p95']):>8} "
            f"{_fmt(model['tokens_per_s']['median']):>10} {_fmt(model['tokens_per_s']['p95']):>8}"
        )
    if not result["models"]:
        _out("no requests recorded in that period")
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
