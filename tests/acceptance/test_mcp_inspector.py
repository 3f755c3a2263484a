"""The MCP Inspector's CLI (`@modelcontextprotocol/inspector --cli`) drives `stepkeeper serve`.

It is a client nobody here wrote. `make test` installs it from tests/inspector/package.json when
npm is on the machine; in CI it must be there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
INSPECTOR = Path(__file__).resolve().parents[1] / "inspector" / "node_modules" / ".bin" / "mcp-inspector"
SKILL = 'def handler(ctx, step):\n    return step.run("answer", lambda: 6 * 7)\n'

if not INSPECTOR.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"the MCP Inspector is not installed at {INSPECTOR}; `make test` installs it")
    pytest.skip(
        "the MCP Inspector is not installed (needs npm; `make test` installs it)", allow_module_level=True
    )


def inspector(home: Path, *arguments: str) -> dict:
    server = [str(Path(sys.executable).parent / "stepkeeper"), "--home", str(home), "serve"]
    command = [str(INSPECTOR), "--cli", *server, *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_inspector_lists_tools_and_creates_and_invokes_a_skill(tmp_path: Path) -> None:
    listed = inspector(tmp_path, "--method", "tools/list")
    assert {"create_skill", "invoke_function"} <= {tool["name"] for tool in listed["tools"]}
    call = ["--method", "tools/call", "--tool-name"]
    created = inspector(
        tmp_path, *call, "create_skill", "--tool-arg", "name=answer", "--tool-arg", f"code={SKILL}"
    )
    assert created["isError"] is False and created["structuredContent"]["version"] == 1
    run = inspector(tmp_path, *call, "invoke_function", "--tool-arg", "name=answer")
    assert run["isError"] is False
    assert run["structuredContent"]["status"] == "completed" and run["structuredContent"]["output"] == 42
