"""The HTTP application of ``dlfm serve``: a trained model behind FastAPI.

Endpoints (JSON in and out; ids as they appear in the data, ``"196"`` and ``196`` alike):

- ``GET /recommend?user=U&k=10&exclude_seen=true[&fallback=false]`` →
  ``{"user", "k", "exclude_seen", "known", "items": [{"item", "score"}, ...]}``;
- ``POST /recommend`` ``{"ratings": {item: rating, ...}, "k": 10[, "fallback": false]}`` → the same
  for a user the model never saw, folded in from those ratings without retraining;
- ``GET /predict?user=U&item=I[&samples=S][&fallback=false]`` → one record
  ``{"user", "item", "known", "prediction"[, "std", "q05", "q95"]}``, as ``dlfm predict --json``;
- ``POST /predict`` ``{"pairs": [[user, item], ...][, "samples": S][, "fallback": false]}`` →
  ``{"predictions": [record, ...]}``;
- ``GET /health`` → ``{"status": "ok"}``; ``GET /model`` → the model card; ``/docs`` → OpenAPI.

Errors are ``{"error": message, "status": code}`` (validation errors add ``"fields"``), never a
traceback: an unknown user or item is 404 (``fallback=true`` gives the model's documented
fallback instead, clipped to the scale: the training mean plus the known bias for the
baselines, the encoders' code of an empty row for ``dlf``/``vdlf``); malformed JSON,
a wrong type, a missing or unknown field, ``k`` outside 1..1000, a rating off the model's scale
are 422; a body over ``max_body_bytes`` is 413; anything unexpected is a 500 with a generic
message (the traceback goes to the server's log only). The server keeps serving after each.

Computation runs in a worker thread under the model's lock (see
:class:`~dlfm.serving.service.ModelService`); a cached ranking is answered on the event loop.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Annotated, Any, Awaitable, Callable, MutableMapping, Union

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import (BaseModel, ConfigDict, Field, PlainValidator, StrictBool, StrictInt, StringConstraints,
                          ValidationError, WithJsonSchema)
    from pydantic_core import PydanticCustomError
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    from dlfm.errors import ConfigError

    raise ConfigError(f"dlfm serve needs the serve extra: pip install 'dlfm[serve]' ({exc})") from None

from dlfm import __version__
from dlfm.errors import ConfigError, DataError, DlfmError, UnknownIdError
from dlfm.models.base import Recommender
from dlfm.serving.service import (MAX_ID_LENGTH, MAX_K, MAX_PAIRS, MAX_RATINGS, MAX_SAMPLES, ModelService,
                                  Ranking)

log = logging.getLogger("dlfm.serve")

#: default limit on a request body, in bytes
MAX_BODY_BYTES = 1 << 20
#: the most bytes of an oversized body read (and dropped) before the 413
DRAIN_BYTES = 64 << 20
#: what a client is told of a bug
INTERNAL_ERROR = "internal server error (see the server's log)"
#: environment variable through which ``dlfm serve --workers N`` configures each worker
CONFIG_ENV = "DLFM_SERVE_CONFIG"



def _raw_id(value: Any) -> Any:
    """A raw id in a JSON body: a string of 1 to ``MAX_ID_LENGTH`` characters or an integer."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PydanticCustomError("raw_id", "an id must be a string or an integer")
    if isinstance(value, str) and not 1 <= len(value) <= MAX_ID_LENGTH:
        raise PydanticCustomError("raw_id", f"an id must have 1 to {MAX_ID_LENGTH} characters")
    return value


def _rating(value: Any) -> float:
    """A rating in a JSON body: a finite number (not a string, not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("rating", "a rating must be a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise PydanticCustomError("rating", "a rating must be a finite number")
    return number


RawId = Annotated[Any, PlainValidator(_raw_id),
                  WithJsonSchema({"anyOf": [{"type": "string", "maxLength": MAX_ID_LENGTH}, {"type": "integer"}]})]
Rating = Annotated[float, PlainValidator(_rating), WithJsonSchema({"type": "number"})]


QueryId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]


class RecommendQuery(BaseModel):
    """``GET /recommend``'s query parameters."""

    user: QueryId = Field(description="raw user id")
    k: int = Field(10, ge=1, le=MAX_K, description="how many items")
    exclude_seen: bool = Field(True, description="leave out items the user rated in training")
    fallback: bool = Field(False, description="an unknown user gets the fallback ranking instead of a 404")


class PredictQuery(BaseModel):
    """``GET /predict``'s query parameters."""

    user: QueryId = Field(description="raw user id")
    item: QueryId = Field(description="raw item id")
    samples: int = Field(0, ge=0, le=MAX_SAMPLES,
                         description="draw this many samples of the predictive distribution (0: the mean only; else ≥ 2)")
    fallback: bool = Field(False, description="unknown ids get the model's fallback instead of a 404")


def _parse_query(request: Request, model: type[BaseModel]) -> Any:
    """The query string validated by ``model``; errors as FastAPI's own (a 422 naming the
    parameter). Validating the whole query in one model call costs a fraction of FastAPI's
    per-parameter validation, which matters on the hottest endpoint."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError([{**err, "loc": ("query", *err["loc"])} for err in exc.errors()]) from None


def _query_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI description of the query parameters of ``model`` (for ``/docs``)."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return {"parameters": [{"name": name, "in": "query", "required": name in required,
                            "description": prop.get("description", ""),
                            "schema": {k: v for k, v in prop.items() if k != "description"}}
                           for name, prop in schema["properties"].items()]}


class NewUserRequest(BaseModel):
    """``POST /recommend``: a new user's ratings."""

    model_config = ConfigDict(extra="forbid")
    ratings: dict[QueryId, Rating] = Field(min_length=1, max_length=MAX_RATINGS,
                                           description="the new user's ratings, {item id: rating on the model's scale}",
                                           examples=[{"50": 5, "172": 5, "181": 4}])
    k: StrictInt = Field(10, ge=1, le=MAX_K, description="how many items")
    fallback: StrictBool = Field(False, description="ignore rated items the model never saw instead of a 404")


class PredictRequest(BaseModel):
    """``POST /predict``: (user, item) pairs."""

    model_config = ConfigDict(extra="forbid")
    pairs: list[tuple[RawId, RawId]] = Field(min_length=1, max_length=MAX_PAIRS, examples=[[[196, 242], [186, 302]]],
                                             description="[user id, item id] pairs")
    samples: StrictInt = Field(0, ge=0, le=MAX_SAMPLES,
                               description="draw this many samples of the predictive distribution (0: the mean only; else ≥ 2)")
    fallback: StrictBool = Field(False, description="unknown ids get the model's fallback instead of a 404")


class ScoredItem(BaseModel):
    item: Union[int, str]
    score: float


class Recommendations(BaseModel):
    user: Union[int, str, None]
    k: int
    exclude_seen: bool
    known: bool
    items: list[ScoredItem]
    ignored: list[Union[int, str]] = []


class Prediction(BaseModel):
    user: Union[int, str]
    item: Union[int, str]
    known: bool
    prediction: float
    std: float | None = None
    q05: float | None = None
    q95: float | None = None


class Predictions(BaseModel):
    predictions: list[Prediction]


class ErrorBody(BaseModel):
    error: str
    status: int
    fields: list[dict[str, str]] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody, "description": text} for code, text in (
    (404, "unknown user or item"), (413, "request body too large"), (422, "invalid request"))}


# ---------------------------------------------------------------------------- errors
def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status)


_UNPARSABLE_BODY = "There was an error parsing the body"


def _field_name(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query")] or [str(p) for p in loc]
    return ".".join(parts) or "request"


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    fields = []
    for err in exc.errors()[:20]:  # type: ignore[attr-defined]
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "")
            fields.append({"field": "body", "message": f"malformed JSON ({reason})" if reason else "malformed JSON"})
        else:
            fields.append({"field": _field_name(loc), "message": str(err.get("msg", "invalid"))})
    message = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:3]) or "invalid request"
    return _error(422, message, fields=fields)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:  # FastAPI's answer to e.g. too deep nesting
        message = "malformed JSON (it cannot be parsed: nested too deeply, or not UTF-8 text)"
        return _error(422, f"body: {message}", fields=[{"field": "body", "message": message}])
    response = _error(exc.status_code, str(exc.detail))
    for key, value in (exc.headers or {}).items():
        response.headers[key] = value
    return response


def _unknown_id(request: Request, exc: Exception) -> JSONResponse:
    return _error(404, str(exc))


def _invalid_value(request: Request, exc: Exception) -> JSONResponse:
    return _error(422, str(exc))


def _dlfm_error(request: Request, exc: Exception) -> JSONResponse:
    return _error(400, str(exc))


class Guard:
    """ASGI middleware around the app: refuse request bodies over ``max_bytes`` with a 413
    before the app reads them (by ``Content-Length``, and by counting for chunked bodies), and
    turn any exception the app lets through into a JSON 500 (the traceback goes to the log).

    Catching here rather than with a handler for ``Exception`` matters: Starlette sends such a
    handler's response and then raises the exception again, and uvicorn closes the connection,
    so a client's next request on it would fail."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit():
                    await _error(400, "invalid Content-Length header")(scope, receive, send)
                    return
                if int(value) > self.max_bytes:
                    if int(value) > DRAIN_BYTES:  # not worth reading: answer and close
                        response = _error(413, f"request body larger than {self.max_bytes} bytes")
                        response.headers["connection"] = "close"
                        await response(scope, receive, send)
                        return
                    await self._refuse(scope, receive, send)
                    return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, more=bool(message.get("more_body", False)))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        started = False

        async def watched_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, replay, watched_send)
        except Exception as exc:  # noqa: BLE001 - the last resort: no traceback reaches a client
            log.error("unexpected error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
            if not started:
                await _error(500, INTERNAL_ERROR)(scope, replay, send)

    async def _refuse(self, scope: Any, receive: Any, send: Any, more: bool = True) -> None:
        """Answer 413. The rest of the body (``more``) is read and dropped first, up to
        ``DRAIN_BYTES``: closing a connection with unread data in it resets it, and the
        client, still sending, might then never read the answer. A longer body is cut off."""
        drained, clean = 0, not more
        while more and drained <= DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            drained += len(message.get("body", b""))
            more = bool(message.get("more_body", False))
            clean = not more
        response = _error(413, f"request body larger than {self.max_bytes} bytes")
        if not clean:
            response.headers["connection"] = "close"
        await response(scope, receive, send)


# ---------------------------------------------------------------------------- the app
def _ranking(items: Ranking) -> list[dict[str, Any]]:
    return [{"item": item, "score": score} for item, score in items]


def create_app(model: Recommender | ModelService, *, max_body_bytes: int = MAX_BODY_BYTES,
               cache_users: int = 4096) -> FastAPI:
    """The FastAPI application serving ``model`` (a fitted model, or a ready service).

    Args:
        model: what to serve; a :class:`Recommender` is wrapped in a :class:`ModelService`
            (which warms the model's caches now).
        max_body_bytes: larger request bodies are refused with 413.
        cache_users: rankings of that many known users are cached (0: no cache).
    """
    service = model if isinstance(model, ModelService) else ModelService(model, cache_users=cache_users)
    if max_body_bytes < 1:
        raise ConfigError("max_body_bytes must be positive")
    app = FastAPI(title="dlfm", version=__version__,
                  description=f"A `{service.model.name}` model trained on {service.card.get('dataset')}, "
                              "served by dlfm. Ids as they appear in the data.")
    app.state.service = service
    app.add_middleware(Guard, max_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(UnknownIdError, _unknown_id)
    app.add_exception_handler(ConfigError, _invalid_value)
    app.add_exception_handler(DataError, _invalid_value)
    app.add_exception_handler(DlfmError, _dlfm_error)

    @app.get("/health", summary="Liveness: answers at once")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/model", summary="The model card: data set, metrics, parameters, versions")
    async def model_card() -> JSONResponse:
        return JSONResponse(service.card)

    @app.get("/recommend", response_model=Recommendations, responses=ERRORS,
             summary="Top-k items for a known user", openapi_extra=_query_doc(RecommendQuery))
    async def recommend(request: Request) -> JSONResponse:
        query = _parse_query(request, RecommendQuery)
        user, k, exclude_seen = query.user, query.k, query.exclude_seen
        known = True
        top = service.cached_recommend(user, k, exclude_seen)
        if top is None:
            if service.user_index(user) < 0:
                if not query.fallback:
                    raise UnknownIdError(f"unknown user {user!r} (send fallback=true for the fallback ranking)")
                known = False
                top = await run_in_threadpool(service.recommend_unknown, k)
            else:
                top = await run_in_threadpool(service.recommend, user, k, exclude_seen=exclude_seen)
        return JSONResponse({"user": user, "k": k, "exclude_seen": exclude_seen, "known": known,
                             "items": _ranking(top)})

    @app.post("/recommend", response_model=Recommendations, responses=ERRORS,
              summary="Top-k items for a new user from their ratings (no retraining)")
    async def recommend_new(body: NewUserRequest) -> JSONResponse:
        top, ignored = await run_in_threadpool(service.recommend_new_user, body.ratings, body.k, fallback=body.fallback)
        return JSONResponse({"user": None, "k": body.k, "exclude_seen": True, "known": len(ignored) < len(body.ratings),
                             "items": _ranking(top), "ignored": ignored})

    @app.get("/predict", response_model=Prediction, responses=ERRORS,
             summary="Predicted rating of one (user, item) pair", openapi_extra=_query_doc(PredictQuery))
    async def predict_one(request: Request) -> JSONResponse:
        query = _parse_query(request, PredictQuery)
        records = await run_in_threadpool(service.predict, [(query.user, query.item)], query.samples,
                                          fallback=query.fallback)
        return JSONResponse(records[0])

    @app.post("/predict", response_model=Predictions, responses=ERRORS,
              summary="Predicted ratings of many (user, item) pairs")
    async def predict_many(body: PredictRequest) -> JSONResponse:
        records = await run_in_threadpool(service.predict, body.pairs, body.samples, fallback=body.fallback)
        return JSONResponse({"predictions": records})

    return app


def create_app_from_env() -> FastAPI:
    """The app as configured by ``$DLFM_SERVE_CONFIG`` (JSON: ``model_path`` and the options of
    :func:`create_app`, ``device``, ``threads``): the factory each ``--workers`` process calls."""
    config = json.loads(os.environ[CONFIG_ENV])
    if config.get("threads"):
        import torch

        torch.set_num_threads(int(config["threads"]))
    model = Recommender.load(config["model_path"], device=config.get("device"))
    return create_app(model, max_body_bytes=int(config.get("max_body_bytes", MAX_BODY_BYTES)),
                      cache_users=int(config.get("cache_users", 4096)))
