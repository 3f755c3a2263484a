"""Configuration: one name per setting, from the environment, each with a CLI flag of the same meaning."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.backlog import DEFAULT_MAX_BACKLOG
from engine.limits import LEASE_SECONDS
from engine.llm_config import LlmSettings, llm_settings_from

if TYPE_CHECKING:
    from engine import Engine
    from sandbox.process_runner import ProcessRunner

# The store, the engine and the sandbox are imported by the methods that build them: reading the
# settings stays cheap, so `stepkeeper worker` can start the sandbox before the heavy imports.

SECRET_PREFIX = "STEPKEEPER_SECRET_"


@dataclass
class Settings:
    home: Path = field(default_factory=lambda: Path("~/.stepkeeper").expanduser())
    database_url: str | None = None
    http_allow: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    workers: int = max(2, os.cpu_count() or 2)
    token: str | None = None
    lease_seconds: float = LEASE_SECONDS
    llm: LlmSettings | None = None
    max_backlog: int = DEFAULT_MAX_BACKLOG

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        settings = cls()
        if env.get("STEPKEEPER_HOME"):
            settings.home = Path(env["STEPKEEPER_HOME"]).expanduser()
        settings.database_url = env.get("STEPKEEPER_DATABASE_URL") or None
        settings.http_allow = _split(env.get("STEPKEEPER_HTTP_ALLOW", ""))
        settings.secrets = {
            name[len(SECRET_PREFIX) :]: value for name, value in env.items() if name.startswith(SECRET_PREFIX)
        }
        settings.token = env.get("STEPKEEPER_TOKEN") or None
        if env.get("STEPKEEPER_WORKERS"):
            settings.workers = int(env["STEPKEEPER_WORKERS"])
        settings.llm = llm_settings_from(env)
        if env.get("STEPKEEPER_LEASE_SECONDS"):
            settings.lease_seconds = _lease(env["STEPKEEPER_LEASE_SECONDS"])
        if env.get("STEPKEEPER_MAX_BACKLOG"):
            settings.max_backlog = _max_backlog(env["STEPKEEPER_MAX_BACKLOG"])
        return settings

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'stepkeeper.db'}"

    def check_database(self) -> None:
        """Raise the store's own clear error for a database URL it cannot use."""
        from engine import SqlStore

        SqlStore(self.url).close()

    def start_runner(self) -> ProcessRunner:
        """The engine's sandbox runner, its zygote already starting: its interpreter start and
        imports overlap this process's own imports instead of delaying the first activation."""
        from sandbox.process_runner import ProcessRunner

        runner = ProcessRunner(warm=self.workers)
        runner.start()
        return runner

    def build_engine(self, runner: ProcessRunner | None = None) -> Engine:
        """The engine these settings describe; `runner`: one from `start_runner` (else its own)."""
        from engine import Engine, SqlStore

        # Activations are threads blocked on I/O most of the time: allow several per worker.
        return Engine(
            SqlStore(self.url),
            runner,
            workers=self.workers,
            concurrency=max(4, self.workers * 8),
            http_allow=self.http_allow,
            secrets=self.secrets,
            lease_seconds=self.lease_seconds,
            llm=self.llm,
            max_backlog=self.max_backlog,
        )


def _lease(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 1 <= seconds <= 3600:
        raise ValueError(f"STEPKEEPER_LEASE_SECONDS must be a number from 1 to 3600, not {text!r}")
    return seconds


def _max_backlog(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 100_000_000:
        raise ValueError(f"STEPKEEPER_MAX_BACKLOG must be a whole number from 1 to 100000000, not {text!r}")
    return int(text)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
