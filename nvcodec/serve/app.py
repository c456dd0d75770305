"""The FastAPI app: endpoints, request and response models, errors as JSON.

`create_app(settings)` builds a `Service` and starts it with the app's lifespan; pass `service`
to serve one built (and started) elsewhere — what `server.run` and a Ray Serve deployment do.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Annotated, Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import NvcodecError
from ..jsonout import dumps
from .batch import InferRequest
from .errors import error_body, one_line
from .metrics import Metrics
from .middleware import Guard
from .service import Service
from .settings import ServeSettings

JSON = "application/json"


class InferBody(BaseModel):
    """`POST /v1/infer`: what `nvcodec infer VIDEO --task T1,T2 --frames A:B --json` answers."""

    model_config = ConfigDict(extra="forbid")

    video: StrictStr = Field(max_length=1024, description="Path of the .nvp relative to LIBRARY.")
    tasks: list[Annotated[StrictStr, Field(max_length=128)]] = Field(
        min_length=1, max_length=64, description="Attached task names.")
    frames: list[StrictInt | None] | None = Field(
        None, min_length=2, max_length=2,
        description="Frames [a, b) (half-open; null: from the start / to the end); default: every frame.")
    window: StrictInt | None = Field(None, ge=1, description="Clip tasks: video frames per window.")
    stride: StrictInt | None = Field(None, ge=1, description="Clip tasks: video frames between window starts.")
    threshold: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False,
                                    description="Detection score threshold (null: each task's own default).")

    def request(self) -> InferRequest:
        frames = (self.frames[0], self.frames[1]) if self.frames is not None else None
        return InferRequest(self.video, tuple(self.tasks), frames, self.window, self.stride,
                            None if self.threshold is None else float(self.threshold))


ERROR_SCHEMA = {"description": "A JSON error: {\"error\": {\"status\", \"type\", \"message\", \"exit_code\"}}"}
ERRORS = {s: ERROR_SCHEMA for s in (400, 401, 404, 408, 409, 413, 422, 429, 500, 503, 504)}


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status_code=status, media_type=JSON, headers=headers)


def _error(exc: BaseException) -> Response:
    body = error_body(exc)
    return _json(body, body["error"]["status"])


def _disconnected(request: Request) -> Any:
    return request.is_disconnected


def _started(request: Request) -> float:
    return request.scope.get("state", {}).get("started") or time.monotonic()


def create_app(settings: ServeSettings | None = None, service: Service | None = None) -> FastAPI:
    """The HTTP app over `service` (built from `settings` when not given)."""
    if service is None:
        if settings is None:
            raise ValueError("create_app needs settings or a service")
        service = Service(settings)
    settings = service.settings
    metrics = Metrics(service.snapshot)
    own = not service.running

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if own:
            await asyncio.to_thread(service.start)
        yield
        if own:
            await asyncio.to_thread(service.close)

    app = FastAPI(title="nvcodec serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Tasks served straight from .nvp files: partial INR decode, adapter, backbone tail. "
                              "Errors are JSON with the `nvcodec infer` exit code they stand for.")
    app.state.service = service
    app.state.metrics = metrics
    app.add_middleware(Guard, token=settings.token, max_concurrent=settings.max_concurrent,
                       max_body=settings.max_body, body_timeout=settings.request_timeout, counter=service,
                       observe=metrics.observe)

    @app.exception_handler(NvcodecError)
    async def _nvcodec_error(_: Request, exc: NvcodecError) -> Response:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            status, message = 400, "malformed JSON body"
        else:
            first = errors[0] if errors else {}
            where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
            status, message = 422, f"{where}: {first.get('msg', 'invalid request')}"
            if len(errors) > 1:
                message += f" (and {len(errors) - 1} more)"
        return _json({"error": {"status": status, "type": "ValidationError", "message": one_line(message),
                                "exit_code": 2}}, status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return _json({"error": {"status": exc.status_code, "type": "HTTPError", "message": one_line(str(exc.detail)),
                                "exit_code": None}}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> Response:
        return _error(exc)

    @app.get("/healthz", summary="Liveness: 200 while the service takes work")
    async def healthz() -> Response:
        if service.scheduler.closed:
            return _json({"status": "draining"}, 503)
        return _json({"status": "ok", "version": __version__, "in_flight": service.in_flight,
                      "uptime_s": round(time.time() - service.started, 3)})

    @app.get("/metrics", summary="Prometheus text: requests, latency, batches, caches, decoded blocks")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/videos", summary="The videos under LIBRARY, each with its info", responses=ERRORS)
    async def videos() -> Response:
        return _json({"videos": await service.videos()})

    @app.get("/v1/videos/{name:path}/frames/{index:int}.png", summary="One decoded frame as PNG",
             response_class=Response, responses={**ERRORS, 200: {"content": {"image/png": {}}}})
    async def frame(name: str, index: int, request: Request) -> Response:
        data = await service.frame_png(name, index, _disconnected(request), _started(request))
        return Response(data, media_type="image/png")

    @app.get("/v1/videos/{name:path}", summary="One video's `nvcodec info --json`", responses=ERRORS)
    async def info(name: str) -> Response:
        return _json(await service.info(name))

    @app.post("/v1/infer", summary="Run attached tasks on frames: the JSON of `nvcodec infer --json`",
              responses=ERRORS)
    async def infer(body: InferBody, request: Request) -> Response:
        started = _started(request)
        answer = await service.infer(body.request(), _disconnected(request), started)
        text = dumps(answer.report)
        return Response(text, media_type=JSON, headers={
            "X-Nvcodec-Server-Ms": f"{(time.monotonic() - started) * 1000:.3f}",
            "X-Nvcodec-Cached-Units": f"{answer.cached_units}/{answer.units}",
            "X-Nvcodec-Batch-Requests": str(answer.batch_requests)})

    return app

