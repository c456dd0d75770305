"""`nvcodec serve --ray`: the same app as a Ray Serve deployment, one `Service` per replica.

Each replica builds its own `Service` (scheduler, caches, backbones and adapters loaded once per
replica) from the same `ServeSettings` and serves `create_app(service=...)` behind Ray Serve's
HTTP proxy, so the endpoints, limits and errors are those of the single-process service. Requests
are spread over the replicas by Ray Serve; batching and the caches work within a replica.
Needs Ray Serve (`pip install 'nvcodec[ray]'`); imported only when `--ray` is given.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, TextIO

from ..errors import NvcodecError, UsageError
from .settings import ServeSettings

APP_NAME = "nvcodec"
DEPLOYMENT_NAME = "nvcodec_serve"
RAY_SERVE_EXTRA = "pip install 'nvcodec[ray]'"
MAX_REPLICAS = 1024
SHUTDOWN_GRACE_S = 5.0
PROXY_READY_S = 60.0


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the deployment runs: `address` (``auto``: $RAY_ADDRESS, else a new local
    Ray; ``local``; or a cluster ADDRESS), replicas, and CPUs and GPUs reserved per replica."""

    address: str = "auto"
    replicas: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0

    def checked(self) -> "RayOptions":
        """These options, or UsageError naming the first value out of range."""
        if not self.address or self.address == "off":
            raise UsageError("--ray must be auto, local or a cluster ADDRESS")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or not 1 <= self.replicas <= MAX_REPLICAS:
            raise UsageError(f"--replicas must be an integer in 1..{MAX_REPLICAS}, got {self.replicas!r}")
        for name, value in (("--gpus-per-replica", self.gpus_per_replica), ("cpus per replica", self.cpus_per_replica)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UsageError(f"{name} must be a number >= 0, got {value!r}")
        return self


def missing_ray_serve() -> str | None:
    """Why Ray Serve cannot be used here (a one-line message), or None when it can."""
    try:
        from ray import serve  # noqa: F401
    except ImportError as exc:
        return f"nvcodec serve --ray needs Ray Serve ({exc}): {RAY_SERVE_EXTRA}"
    return None


def _replica_class() -> Any:
    """The deployment class: a `Service` built in the replica, its app built by Ray Serve after it."""
    from ray import serve

    from .app import create_app
    from .service import Service

    @serve.ingress()
    class NvcodecReplica:
        """One replica: the service and its HTTP app."""

        def __init__(self, settings: ServeSettings) -> None:
            self.service = Service(settings).start()

        def __serve_build_asgi_app__(self) -> Any:
            return create_app(service=self.service)

        def __del__(self) -> None:
            service = getattr(self, "service", None)
            if service is not None:
                service.close()

    return NvcodecReplica


def build_app(settings: ServeSettings, options: RayOptions) -> Any:
    """The Ray Serve application (`serve.run` it): `options.replicas` replicas of the service."""
    from ray import serve

    settings = dataclasses.replace(settings, library=os.path.abspath(settings.library)).checked()
    options = options.checked()
    deployment = serve.deployment(
        _replica_class(), name=DEPLOYMENT_NAME, num_replicas=options.replicas,
        max_ongoing_requests=settings.max_concurrent,
        graceful_shutdown_timeout_s=settings.request_timeout + SHUTDOWN_GRACE_S,
        ray_actor_options={"num_cpus": options.cpus_per_replica, "num_gpus": options.gpus_per_replica})
    return deployment.bind(settings)


class RayService:
    """A running deployment: `url`, and `stop()` to delete it (and the Ray instance it started)."""

    def __init__(self, url: str, started_ray: bool) -> None:
        self.url = url
        self._started_ray = started_ray

    def stop(self) -> None:
        """Delete the application (replicas drain); when this process started Ray, stop Serve and Ray
        too (on a cluster it joined, other applications and the proxy are left running)."""
        import ray
        from ray import serve

        if not self._started_ray:
            serve.delete(APP_NAME)
            return
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def start(settings: ServeSettings, options: RayOptions) -> RayService:
    """Join or start Ray, start Serve's proxy on `settings.host`:`settings.port` and deploy the app.

    Returns once every replica has started (its `--tasks` backbones built). A Ray already
    initialised in this process is used as it is.
    """
    why = missing_ray_serve()
    if why:
        raise NvcodecError(why)
    if settings.port == 0:
        raise UsageError("--ray needs a fixed --port (Ray Serve's proxy cannot pick a free one)")
    options = options.checked()
    import ray
    from ray import serve

    from ..jobs.runner import connect_ray

    # Serve kills a proxy that is not ready within 5 s; on a busy machine importing its web stack takes
    # longer, and `serve --ray` failed with "killed by ray.kill". A Ray started here inherits this.
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", str(PROXY_READY_S))
    _, started_ray = connect_ray(ray, options.address, options.replicas, max(options.cpus_per_replica, 0.01))
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_app(settings, options), name=APP_NAME, route_prefix="/", blocking=False)
    except (RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        try:
            RayService("", started_ray).stop()
        except Exception:  # noqa: BLE001 - the deployment's own error is the one to report
            pass
        raise NvcodecError(f"Ray Serve could not start the deployment: {' '.join(str(exc).split())[:300]}") from None
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return RayService(f"http://{host}:{settings.port}", started_ray)


def run(settings: ServeSettings, options: RayOptions, log: TextIO = sys.stderr) -> None:
    """`start`, then serve until SIGINT/SIGTERM, then shut the deployment down (replicas drain).

    The signal handlers are installed once Ray has started, since `ray.init` installs its own.
    """
    svc = start(settings, options)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"nvcodec serve: {options.replicas} Ray Serve replica(s) of the library {settings.library}, "
              f"listening on {svc.url}", file=log, flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        try:
            svc.stop()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
