"""The sandbox turns Nagle's algorithm off on accepted connections, as Node (Rocket.Chat) does.

With Nagle on, a response written in two pieces on a kept-alive connection waits for the
client's delayed ACK: every request after the first one on a connection took ~40 ms.
"""

from __future__ import annotations

import socket

import httpx

from sandbox.server import SandboxServer


def test_accepted_connections_have_tcp_nodelay() -> None:
    with SandboxServer() as server, httpx.Client(base_url=server.url) as client:
        for _ in range(2):  # the second request reuses the kept-alive connection
            assert client.get("/api/info").status_code == 200
        assert server._uvicorn is not None
        sockets = [
            protocol.transport.get_extra_info("socket")
            for protocol in server._uvicorn.server_state.connections
            if getattr(protocol, "transport", None) is not None
        ]
        assert sockets, "the kept-alive connection should still be open"
        assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)
