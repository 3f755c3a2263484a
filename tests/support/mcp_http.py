"""One MCP tool call over Streamable HTTP with the SDK's own client, for tests that mostly speak
to the JSON API."""

from __future__ import annotations

from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult


async def call_tool(base: str, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    http = httpx2.AsyncClient(timeout=60)
    async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as session:
        return await session.call_tool(tool, arguments)


async def tool_result(base: str, tool: str, arguments: dict[str, Any]) -> Any:
    """The structured result of a call that must succeed."""
    result = await call_tool(base, tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content
