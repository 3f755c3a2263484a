"""A scripted model: a real HTTP server on 127.0.0.1 that speaks the Anthropic Messages API
(`POST /v1/messages`) and the OpenAI chat-completions API (`POST /v1/chat/completions`).

Replies are taken in turn from `script` (then a plain "ok"); every request is recorded with its
path, body and headers, so a test can count the calls a step made.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from mcp_server.loopback import reply_json, serve


@dataclass
class Reply:
    answer: Any = "ok"  # text, or a JSON value for a structured answer
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted error"
    delay: float = 0.0  # seconds before answering


@dataclass
class Request:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


class ModelServer:
    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with model._lock:
                    model.requests.append(
                        Request(self.path, body, {k.lower(): v for k, v in self.headers.items()})
                    )
                    reply = model.script.pop(0) if model.script else Reply()
                time.sleep(reply.delay)
                if self.path == "/v1/messages":
                    payload = anthropic_payload(body, reply)
                elif self.path == "/v1/chat/completions":
                    payload = openai_payload(body, reply)
                else:
                    reply, payload = Reply(status=404), {"error": {"message": f"no route {self.path}"}}
                reply_json(self, reply.status, payload, reply.headers)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = serve(Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def calls(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _tokens(body: dict[str, Any]) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))


def anthropic_payload(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    if reply.status >= 400:
        return {"type": "error", "error": {"type": "scripted_error", "message": reply.message}}
    if body.get("tools") and not isinstance(reply.answer, str):
        content = [{"type": "tool_use", "id": "toolu_1", "name": "answer", "input": reply.answer}]
    else:
        content = [{"type": "text", "text": str(reply.answer)}]
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": content,
        "stop_reason": "end_turn",
        "usage": {"input_tokens": _tokens(body), "output_tokens": len(json.dumps(reply.answer).split())},
    }


def openai_payload(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    if reply.status >= 400:
        return {"error": {"message": reply.message, "type": "scripted_error"}}
    text = reply.answer if isinstance(reply.answer, str) else json.dumps(reply.answer)
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": _tokens(body), "completion_tokens": len(text.split())},
    }
