"""`nvcodec serve`: the HTTP service over a library of .nvp files (the `serve` extra)."""

from __future__ import annotations

import click

from nvcodec.errors import NvcodecError, UsageError

from .render import EPILOG


@click.command(epilog=EPILOG)
@click.argument("library", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port (0: a free one, printed at start-up).")
@click.option("--device", default="auto", show_default=True)
@click.option("--tasks", "tasks_", metavar="T1,T2", help="Build these tasks' backbones at start-up.")
@click.option("--token-file", type=click.Path(dir_okay=False),
              help="Require 'Authorization: Bearer TOKEN' (the file's first line) everywhere but /healthz.")
@click.option("--max-frames", type=int, default=256, show_default=True, help="Frames per infer request.")
@click.option("--max-body", type=int, default=65536, show_default=True, help="Request body bytes.")
@click.option("--max-concurrent", type=int, default=32, show_default=True,
              help="Requests in flight (429 beyond; /healthz and /metrics not counted).")
@click.option("--request-timeout", type=float, default=60.0, show_default=True,
              help="Seconds a request may take (504 beyond; its work is dropped).")
@click.option("--batch-window-ms", type=float, default=10.0, show_default=True,
              help="Requests for one video within this window are computed together.")
@click.option("--cache-mb", type=float, default=256.0, show_default=True,
              help="Prefix activations (3/4) and results (1/4) kept for reuse.")
@click.option("--ray", "ray", metavar="auto|local|ADDRESS",
              help="Run as a Ray Serve deployment: auto ($RAY_ADDRESS, else a new local Ray), local, or a cluster "
                   "ADDRESS (needs pip install 'nvcodec[ray]').")
@click.option("--replicas", type=int, help="With --ray: replicas of the service (default 1).")
@click.option("--gpus-per-replica", type=float, help="With --ray: GPUs reserved per replica (default 0).")
def serve(library: str, host: str, port: int, device: str, tasks_: str | None, token_file: str | None,
          max_frames: int, max_body: int, max_concurrent: int, request_timeout: float, batch_window_ms: float,
          cache_mb: float, ray: str | None, replicas: int | None, gpus_per_replica: float | None) -> None:
    """Serve the .nvp files under LIBRARY over HTTP: info, frames and tasks (see the README's `nvcodec serve`).

    Needs the serve extra (pip install 'nvcodec[serve]'); without it, exits 1 saying so.
    """
    from nvcodec.serve import missing_extra

    if ray is None and (replicas is not None or gpus_per_replica is not None):
        raise UsageError("--replicas and --gpus-per-replica need --ray")
    missing = missing_extra()
    if missing:
        raise NvcodecError(f"nvcodec serve needs the serve extra ({', '.join(missing)} missing): "
                           "pip install 'nvcodec[serve]'")
    from nvcodec.serve.server import run
    from nvcodec.serve.settings import ServeSettings, read_token

    settings = ServeSettings(
        library=library, host=host, port=port, device=device,
        tasks=tuple(t.strip() for t in (tasks_ or "").split(",") if t.strip()),
        token=read_token(token_file) if token_file else None, max_frames=max_frames, max_body=max_body,
        max_concurrent=max_concurrent, request_timeout=request_timeout, batch_window_ms=batch_window_ms,
        cache_mb=cache_mb).checked()
    if ray is not None:
        from nvcodec.serve.deployment import RayOptions, run as run_ray

        options = RayOptions(ray, 1 if replicas is None else replicas,
                             0.0 if gpus_per_replica is None else gpus_per_replica).checked()
        if port == 0:
            raise UsageError("--ray needs a fixed --port (Ray Serve's proxy cannot pick a free one)")
        run_ray(settings, options)
        return
    run(settings)
