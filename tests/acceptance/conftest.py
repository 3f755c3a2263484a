"""Fixtures of the acceptance tests: a real `stepkeeper serve --http` process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.http_server import http_server
from tests.support.recorder import Recorder


@pytest.fixture
def dashboard(tmp_path: Path, recorder: Recorder) -> Iterator[str]:
    """`serve --http` on a free port with its database in `tmp_path` (the MCP app and the
    dashboard); skills may call `recorder`. Yields the base URL."""
    with http_server(tmp_path, {"STEPKEEPER_HTTP_ALLOW": recorder.allow}) as server:
        yield server.base
