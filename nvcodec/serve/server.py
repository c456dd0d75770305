"""Running the app under uvicorn: bind first (so port 0 gets a free port, printed), then serve until
SIGINT/SIGTERM, which stop new connections and drain the requests in flight (SIGTERM then exits 0).

uvicorn bounds connections (`limit_concurrency`: 503 beyond) and idle keep-alive time; a client
that sends its body too slowly gets 408 after --request-timeout (`middleware.Guard`). A client that
never finishes its headers holds one connection until it goes: put a proxy in front where that matters.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from typing import TextIO

from ..errors import UsageError
from .app import create_app
from .service import Service
from .settings import ServeSettings

SHUTDOWN_GRACE_S = 5.0
"""Extra seconds, beyond --request-timeout, that a drain may take before connections are cut."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host`:`port` (UsageError when that address cannot be bound)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def run(settings: ServeSettings, service: Service | None = None, log: TextIO = sys.stderr) -> None:
    """Start `service` (built from `settings` when not given), then serve it until SIGINT/SIGTERM."""
    import uvicorn

    service = service or Service(settings)
    service.start()
    app = create_app(service=service)
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=int(settings.request_timeout + SHUTDOWN_GRACE_S),
                            limit_concurrency=settings.max_concurrent * 4 + 16, timeout_keep_alive=5)
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    print(f"nvcodec serve: {len(service.library.videos())} videos under {service.library.root}, "
          f"listening on {url}", file=log, flush=True)
    if threading.current_thread() is threading.main_thread():
        # uvicorn drains on SIGTERM, then raises it again once it has restored this handler: a drained
        # shutdown then ends here and the command exits 0 (SIGINT still ends as an interrupt, 130).
        signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        service.close()
        sock.close()
