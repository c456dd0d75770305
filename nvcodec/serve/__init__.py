"""`nvcodec serve`: the online stage as an HTTP service over a library of `.nvp` files.

The modules here import nothing from the `serve` extra at module level except `app`, `middleware`,
`metrics` and `server`, which the CLI loads only once `require_extra` has passed:

- `settings`: the service's limits and options (`ServeSettings`);
- `library`: names relative to LIBRARY, resolved safely; the videos it holds;
- `caches`: bounded LRU caches (prefix activations by bytes, results, loaded routes);
- `stats`: the counters the scheduler keeps;
- `loaded`: opened videos, backbones and adapters, loaded once per process;
- `prefix`: INR prefix activations shared across requests through the cache;
- `batch`: one batch of requests for one video, computed together;
- `scheduler`: batching requests that arrive within a window, on one worker thread (no HTTP);
- `service`: the library, the scheduler and the info cache behind the HTTP app;
- `errors`: nvcodec errors and the service's own as HTTP statuses and JSON bodies;
- `app`, `middleware`, `metrics`, `server`: the FastAPI app, its limits, Prometheus text, uvicorn;
- `deployment`: the same app as a Ray Serve deployment (`--ray`, the `ray` extra).
"""

from __future__ import annotations

EXTRA_MODULES = ("fastapi", "uvicorn", "prometheus_client")


def missing_extra() -> list[str]:
    """Modules of the `serve` extra that cannot be imported here."""
    import importlib.util

    return [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]
