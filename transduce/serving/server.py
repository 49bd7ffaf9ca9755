"""Running the app: bind the socket first, stop running decodes on Ctrl+C.

Binding before loading the models turns a bad ``--host`` or a port in use into one
``error:`` line (not the server library's log), and passing the bound socket to uvicorn
leaves no window for another program to take the port.
"""

from __future__ import annotations

import socket
from typing import Any

from transduce.config import TransduceError


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; TransduceError naming what is wrong."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, ValueError) as e:
        raise TransduceError(
            f"--host {host!r} is not an address of this machine ({e}); use e.g. 127.0.0.1, "
            "0.0.0.0 or localhost"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        why = "is in use by another program" if e.errno == 98 else f"cannot be used ({e.strerror})"
        raise TransduceError(
            f"--port {port} on {host} {why}; choose another --port or stop that program"
        ) from None
    sock.set_inheritable(True)
    return sock


def run_server(app: Any, sock: socket.socket, log_level: str = "info") -> None:
    """Serve ``app`` on the bound ``sock`` until Ctrl+C (or SIGTERM).

    On the signal the app's ``state.stopping`` event is set at once, so decodes in the
    pool stop at their next step instead of holding the shutdown until they finish.
    """
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            stopping = getattr(app.state, "stopping", None)
            if stopping is not None:
                stopping.set()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5)
    try:
        Server(config).run(sockets=[sock])
    finally:
        sock.close()
