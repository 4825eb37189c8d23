"""A benchmark server in its own process: serves prebuilt responses, one write each.

    python benchmarks/replay.py ROUTES.json      (prints "PORT <n>" once listening)

The responses are captured from the provider fakes of ``mailparity.testing`` before the run
(``ReplayServer.start`` in ``_env``), so the data is exactly what the fakes render, while the
server shares neither the interpreter nor its lock with the clients being measured. It is a
single-threaded asyncio server: HTTP/1.1 keep-alive, each response written whole in one
``write`` with ``TCP_NODELAY`` (a response written in pieces would stall on delayed ACKs), and
an optional delay before answering (the provider's latency; many requests wait at once).

ROUTES.json::

    {"routes": {"/path": {"status": 200, "type": "application/json", "body": "..."}},
     "templates": [{"body": "...", "id": "<id in body>", "mid": "<internetMessageId in body>"}],
     "template_marker": "e2e-", "delay": 0.0}

A GET whose last path segment starts with ``template_marker`` is answered from template
``hash(segment) % len(templates)`` with that segment as the id and a unique
internetMessageId: as many distinct messages as the run needs, from a few captured ones.

Control (not counted): ``GET /__stats`` (requests served, CPU seconds of this process),
``POST /__delay?seconds=0.05``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
import zlib
from typing import Any
from urllib.parse import unquote

_REASONS = {200: "OK", 404: "Not Found", 400: "Bad Request"}


def _response(status: int, ctype: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        f"request-id: replay\r\n\r\n"
    )
    return head.encode("ascii") + body


class Replay:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.routes: dict[str, bytes] = {
            path: _response(int(r.get("status", 200)), r.get("type", "application/json"),
                            r["body"].encode("utf-8"))
            for path, r in spec.get("routes", {}).items()
        }
        self.templates = [
            (t["body"].encode("utf-8"), t["id"].encode(), t["mid"].encode())
            for t in spec.get("templates", [])
        ]
        self.marker = spec.get("template_marker", "e2e-")
        self.delay = float(spec.get("delay", 0.0))
        self.served = 0
        self.not_found = _response(404, "application/json", b'{"error":{"code":"NotFound"}}')

    def answer(self, method: str, target: str) -> bytes | None:
        path, _, query = target.partition("?")
        if path == "/__stats":
            cpu = time.process_time()
            body = json.dumps({"served": self.served, "cpu": cpu}).encode()
            return _response(200, "application/json", body)
        if path == "/__delay":
            self.delay = float(query.partition("=")[2] or 0)
            return _response(200, "application/json", b"{}")
        self.served += 1
        found = self.routes.get(path)
        if found is not None:
            return found
        segment = unquote(path.rpartition("/")[2])
        if self.templates and segment.startswith(self.marker):
            body, fake_id, fake_mid = self.templates[
                zlib.crc32(segment.encode()) % len(self.templates)
            ]
            body = body.replace(fake_id, segment.encode()).replace(
                fake_mid, f"<{segment}@replay.example>".encode()
            )
            return _response(200, "application/json; charset=utf-8", body)
        return self.not_found


class Connection(asyncio.Protocol):
    def __init__(self, replay: Replay) -> None:
        self.replay = replay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            lines = head.split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            method, target, _ = ([*lines[0].split(" "), "", ""])[:3]
            response = self.replay.answer(method, target)
            if response is None:
                continue
            delay = self.replay.delay if not target.startswith("/__") else 0.0
            if delay > 0:
                asyncio.get_running_loop().call_later(delay, self._write, response)
            else:
                self._write(response)

    def _write(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(spec: dict[str, Any]) -> None:
    replay = Replay(spec)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(replay), "127.0.0.1", 0, backlog=1024, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    os.unlink(sys.argv[1])  # read once; the parent does not need it again
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(spec))


if __name__ == "__main__":
    main()
