"""The `stepkeeper` command: `demo`, `worker`, and read-only `skills`, `runs`, `loops`, `trace` views."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidInput, StepkeeperError
from mcp_server.cli_views import ms, run_tree, table, when
from mcp_server.config import Settings

if TYPE_CHECKING:
    from engine import Engine

# The MCP SDK, the HTTP stack and the demo are imported by the commands that use them: a
# `stepkeeper worker` (and every read-only view) starts without them, which matters for how
# fast a restarted worker recovers runs. The engine itself (the store, SQLAlchemy) is imported
# only once the command is known: a worker first starts its sandbox's zygote, whose interpreter
# then starts on the other core while this one imports the engine (and asyncio, imported by the
# functions that run an event loop).

log = logging.getLogger("stepkeeper")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stepkeeper", description="A durable orchestrator for agent skills."
    )
    parser.add_argument("--home", help="where the embedded database lives (STEPKEEPER_HOME)")
    parser.add_argument(
        "--database-url", help="sqlite:///path or postgresql://user@host/db (STEPKEEPER_DATABASE_URL)"
    )
    parser.add_argument("--http-allow", help="hosts skills may call, comma-separated (STEPKEEPER_HTTP_ALLOW)")
    parser.add_argument("--workers", type=int, help="sandbox worker processes (STEPKEEPER_WORKERS)")
    parser.add_argument("--llm-provider", help="anthropic or openai for step.ai (STEPKEEPER_LLM_PROVIDER)")
    parser.add_argument("--llm-model", help="the model step.ai calls (STEPKEEPER_LLM_MODEL)")
    parser.add_argument("--llm-base-url", help="the provider's API URL (STEPKEEPER_LLM_BASE_URL)")
    parser.add_argument(
        "--max-backlog",
        help="queued runs and unrouted events before new work is refused (STEPKEEPER_MAX_BACKLOG)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve MCP over stdio (nothing but protocol on stdout)")
    serve.add_argument("--http", action="store_true", help="serve Streamable HTTP at /mcp instead")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP address; beyond loopback needs a token")
    serve.add_argument("--port", type=int, default=8788)
    serve.add_argument("--token", help="bearer token required on HTTP requests (STEPKEEPER_TOKEN)")
    demo = commands.add_parser(
        "demo", help="run the seed's scenario on local simulated metrics, print the traces"
    )
    demo.add_argument("--serve", action="store_true", help="then serve the dashboard until Ctrl-C")
    demo.add_argument("--port", type=int, default=8788, help="the dashboard's port with --serve")
    commands.add_parser("worker", help="run the engine (no MCP surface) until interrupted")
    skills = commands.add_parser("skills", help="list registered skills with their 7-day figures")
    loops = commands.add_parser("loops", help="list loops and their next fire times")
    runs = commands.add_parser(
        "runs", help="list recent runs, newest first; `runs show RUN_ID` for one run's steps as a tree"
    )
    runs.add_argument("show", nargs="*", metavar="show RUN_ID", help="show one run")
    runs.add_argument("--skill", "--function", dest="function", help="only this skill's runs")
    runs.add_argument("--status", help="only runs with this status")
    runs.add_argument("--since", help="only runs created since: 1h, 7d or ISO-8601")
    runs.add_argument("--limit", type=int, default=20)
    trace = commands.add_parser("trace", help="print a run's trace as JSON")
    trace.add_argument("run_id")
    trace.add_argument(
        "--otel", action="store_true", help="as OpenTelemetry-shaped JSON (OTLP resourceSpans)"
    )
    for view in (skills, loops, runs):
        view.add_argument("--json", action="store_true", help="JSON for scripts instead of a table")
    return parser


ENV_FLAGS = {
    "llm_provider": "STEPKEEPER_LLM_PROVIDER",
    "llm_model": "STEPKEEPER_LLM_MODEL",
    "llm_base_url": "STEPKEEPER_LLM_BASE_URL",
    "max_backlog": "STEPKEEPER_MAX_BACKLOG",
}


def settings_from(args: argparse.Namespace) -> Settings:
    env = dict(os.environ)
    env.update({name: getattr(args, flag) for flag, name in ENV_FLAGS.items() if getattr(args, flag)})
    settings = Settings.from_env(env)
    if args.home:
        settings.home = Path(args.home).expanduser()
    if args.database_url:
        settings.database_url = args.database_url
    if args.http_allow is not None:
        settings.http_allow = [item.strip() for item in args.http_allow.split(",") if item.strip()]
    if args.workers:
        settings.workers = args.workers
    return settings


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for chatty in ("alembic", "httpx"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        settings = settings_from(args)
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "demo":
            return _demo(settings, args)
    except (StepkeeperError, ValueError) as exc:
        print(f"stepkeeper: {exc}", file=sys.stderr)
        return 2
    runner = settings.start_runner() if args.command == "worker" else None
    try:
        engine = settings.build_engine(runner)
    except (StepkeeperError, ValueError) as exc:
        if runner is not None:
            runner.close()
        print(f"stepkeeper: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        if runner is not None:
            runner.close()
        raise
    import asyncio

    command = COMMANDS[args.command]
    try:
        return asyncio.run(command(engine, args))
    except StepkeeperError as exc:
        print(f"stepkeeper: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    import uvicorn

    from mcp_server.http_app import build_http_app
    from mcp_server.server import build_server

    settings.check_database()  # refuse a bad database URL before speaking protocol
    if args.token:
        settings.token = args.token
    if not args.http:
        asyncio.run(build_server(settings).run_stdio_async())
        return 0
    app = build_http_app(settings, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    """The scenario against a local endpoint; with `--serve`, the dashboard and the demo's loops
    until Ctrl-C (the loops are removed after, since the endpoint goes with the demo)."""
    import asyncio

    import uvicorn

    from mcp_server.demo import remove_loops, run_demo, schedule_loops
    from mcp_server.demo_endpoint import DemoEndpoint
    from mcp_server.http_app import build_http_app

    endpoint = DemoEndpoint()
    settings.http_allow = [*settings.http_allow, endpoint.allow]
    try:
        code = asyncio.run(_in_engine(settings, lambda engine: run_demo(engine, endpoint.base)))
        if not args.serve:
            return code
        loop_ids = asyncio.run(_in_engine(settings, schedule_loops))
        print(f"\ndashboard: http://127.0.0.1:{args.port}/  (Ctrl-C to stop)", flush=True)
        try:
            uvicorn.run(
                build_http_app(settings, "127.0.0.1", args.port),
                host="127.0.0.1",
                port=args.port,
                log_level="warning",
            )
        finally:
            asyncio.run(_in_engine(settings, lambda engine: remove_loops(engine, loop_ids)))
        return code
    finally:
        endpoint.close()


async def _in_engine(settings: Settings, work: Callable[[Engine], Awaitable[Any]]) -> Any:
    async with settings.build_engine() as engine:
        return await work(engine)


async def _worker(engine: Engine, _args: argparse.Namespace) -> int:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with engine:
        log.info("worker %s running on %s", engine.owner, engine.database)
        await stop.wait()
    return 0


Command = Callable[["Engine", argparse.Namespace], Awaitable[int]]


def read_only(view: Command) -> Command:
    """A view of the store: migrates (never drops) the database, runs no scheduler."""

    async def run(engine: Engine, args: argparse.Namespace) -> int:
        try:
            await engine.migrate()
            return await view(engine, args)
        finally:
            await engine.close()

    return run


@read_only
async def _skills(engine: Engine, args: argparse.Namespace) -> int:
    from mcp_server.views import SkillSummary

    skills = await engine.list_skills()
    figures = await engine.get_stats(since="7d")
    if args.json:
        rows = [{**SkillSummary.of(s).model_dump(), "stats": figures.get(s.name)} for s in skills]
        return _print_json(rows)
    print(
        table(
            ["skill", "version", "runs 7d", "success", "p50", "updated", "description"],
            [_skill_row(skill, figures.get(skill.name) or {}) for skill in skills],
        )
    )
    return 0


def _skill_row(skill: Any, figures: dict[str, Any]) -> list[Any]:
    rate = figures.get("success_rate")
    return [
        skill.name,
        f"v{skill.latest_version}",
        figures.get("runs", 0),
        None if rate is None else f"{rate * 100:.0f}%",
        ms(figures.get("duration_p50_ms")),
        when(skill.updated_at),
        skill.description[:60],
    ]


@read_only
async def _runs(engine: Engine, args: argparse.Namespace) -> int:
    from engine.run_history import since_time
    from mcp_server.views import RunSummary

    if args.show:
        if len(args.show) != 2 or args.show[0] != "show":
            raise InvalidInput("use `stepkeeper runs show RUN_ID` for one run, or `stepkeeper runs` to list")
        trace: dict[str, Any] = await engine.get_run_trace(args.show[1])
        return _print_json(trace) if args.json else _print(run_tree(trace))
    since = None if args.since is None else since_time(args.since, time.time())
    page = await engine.list_runs(function=args.function, status=args.status, since=since, limit=args.limit)
    if args.json:
        return _print_json([RunSummary.of(run).model_dump() for run in page.runs])
    rows = [
        [
            run.id,
            f"{run.function} v{run.version}",
            run.status,
            run.trigger,
            when(run.created_at),
            _took(run),
            (run.error or {}).get("message") or run.cancel_reason,
        ]
        for run in page.runs
    ]
    print(table(["run", "skill", "status", "trigger", "created", "took", "error or reason"], rows))
    return 0


def _took(run: Any) -> str:
    if run.started_at is None or run.ended_at is None:
        return "-"
    return ms((run.ended_at - run.started_at) * 1000)


@read_only
async def _loops(engine: Engine, args: argparse.Namespace) -> int:
    from engine import Engine
    from mcp_server.loop_tools import loop_view

    loops = await engine.list_loops()
    if args.json:
        return _print_json([loop_view(loop).model_dump() for loop in loops])
    rows = [
        [
            loop.id,
            loop.name,
            loop.skill,
            loop.cron,
            loop.timezone,
            "paused" if loop.paused else ", ".join(when(t) for t in Engine.upcoming_ticks(loop)),
            when(loop.last_fired_at),
        ]
        for loop in loops
    ]
    print(table(["loop", "name", "skill", "cron", "time zone", "next", "last fired"], rows))
    return 0


@read_only
async def _trace(engine: Engine, args: argparse.Namespace) -> int:
    from engine.otel import otel_trace

    trace: dict[str, Any] = await engine.get_run_trace(args.run_id)
    return _print_json(otel_trace(trace) if args.otel else trace)


def _print(text: str) -> int:
    print(text)
    return 0


def _print_json(value: Any) -> int:
    print(json.dumps(value, indent=2, default=str))
    return 0


COMMANDS: dict[str, Command] = {
    "worker": _worker,
    "skills": _skills,
    "runs": _runs,
    "loops": _loops,
    "trace": _trace,
}
