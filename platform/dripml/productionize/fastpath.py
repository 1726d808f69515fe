"""The lean ``POST /predict``: a pure ASGI middleware that answers well-formed requests itself.

BentoML's own route for ``/predict`` cost about 1.7 ms per single-row request on top of a
1.3 ms model (2 cores, profiled with ``py-spy``): Starlette's routing and exception
middleware, a pydantic ``PredictRequest`` built and validated per request, a hop to the API
thread pool and back, the response model serialised by the IO descriptor, BentoML's context
middleware (plus OpenTelemetry spans and the access log, which the service now leaves off).
:class:`PredictFastPath` sits just inside :class:`~dripml.productionize.guard.RequestGuard`
(so the token and the body limit are checked first) and, for a request it can vouch for,
does only what the answer needs:

1. parse the body with :func:`json.loads`;
2. check it is exactly what the documented schema accepts (``{"records": [...]}`` with 1 to
   ``max_records`` records, each with every feature key and no other, each value of its
   feature's kind: see :func:`dripml.productionize.serving.request_model`), converting a
   numeric feature's integers to floats as pydantic does;
3. predict with :meth:`~dripml.core.model.TrainedModel.predict_records`: in the event-loop
   thread for up to :data:`INLINE_MAX_RECORDS` records (a thread-pool hop costs more than
   one row of a tree model), else in one worker thread of its own so health probes stay
   answered during a 10,000-record call;
4. write the JSON body the response model would (same keys, same order, compact; the headers
   are ``content-type`` and ``content-length`` only, without BentoML's ``server``).

Anything else (malformed JSON, a missing or unknown key, a wrong type, a non-finite number,
a method other than POST, a ``Content-Type`` other than ``application/json``, a model
error) is handed on, with its body, to BentoML's route,
which answers as it always has: the 4xx bodies stay those of the documented OpenAPI schema,
and there is one place that words errors. BentoML's outer middleware (request metrics,
timeouts, concurrency limit) still sees every request; the OpenAPI document, health probes,
``/metrics`` and adaptive batching (the fast path is off while batching is on) are BentoML's.

``DRIPML_SERVE_FAST_PATH=off`` turns it off (every request takes BentoML's route), e.g. to
compare the two (``benchmarks/endpoint_overhead.py``).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dripml.core.features import Feature
from dripml.productionize.guard import Receive, Send, replay_body

__all__ = ["INLINE_MAX_RECORDS", "PredictFastPath", "RecordChecker"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INLINE_MAX_RECORDS = 32
"""Requests of at most this many records are predicted in the event-loop thread; larger ones in
the fast path's own worker thread."""

_NUMERIC, _STRING, _STRING_OR_INT = 0, 1, 2


class RecordChecker:
    """Whether parsed JSON is a request the documented schema accepts, without pydantic.

    Args:
        features: the model's features (names and kinds), in order.
        integer_categories: names of the categorical features whose training categories are
            all integers (they also accept JSON integers, as the schema says).
        max_records: the most records one request may hold.
    """

    def __init__(self, features: Sequence[Feature], *, integer_categories: frozenset[str],
                 max_records: int) -> None:
        kinds: dict[str, int] = {}
        for feature in features:
            if feature.kind == "numeric":
                kinds[feature.name] = _NUMERIC
            elif feature.name in integer_categories:
                kinds[feature.name] = _STRING_OR_INT
            else:
                kinds[feature.name] = _STRING
        self._kinds = kinds
        self._keys = frozenset(kinds)
        self._numeric = tuple(n for n, k in kinds.items() if k == _NUMERIC)
        self._strings = tuple(n for n, k in kinds.items() if k == _STRING)
        self._string_or_int = tuple(n for n, k in kinds.items() if k == _STRING_OR_INT)
        self.max_records = max_records

    def records(self, data: Any) -> list[dict[str, Any]] | None:
        """The records of a valid request (numeric integers turned into floats, in place), or
        None when ``data`` is not one (BentoML's route then words the error)."""
        if type(data) is not dict or len(data) != 1:
            return None
        records = data.get("records")
        if type(records) is not list or not 1 <= len(records) <= self.max_records:
            return None
        for record in records:
            if not self._check(record):
                return None
        return records

    def _check(self, record: Any) -> bool:
        if type(record) is not dict or record.keys() != self._keys:
            return False
        for name in self._numeric:
            value = record[name]
            kind = type(value)
            if kind is float:
                if not math.isfinite(value):
                    return False
            elif kind is int:
                try:
                    record[name] = float(value)
                except OverflowError:
                    return False
            elif value is not None:
                return False
        for name in self._strings:
            value = record[name]
            if value is not None and type(value) is not str:
                return False
        for name in self._string_or_int:
            value = record[name]
            if value is not None and type(value) is not str and type(value) is not int:
                return False
        return True


class PredictFastPath:
    """Pure ASGI middleware: answers valid ``POST <route>`` requests itself (see the module
    docstring); every other request goes on to ``app`` unchanged.

    Args:
        app: the ASGI app inside (BentoML's stack).
        predict: records -> the response body as a JSON-ready dict (the same function the
            BentoML route uses, so both answer alike); may raise, then the request is handed
            to ``app``.
        checker: what a valid request is.
        route: the path answered.
        inline_max_records: the largest request predicted in the event-loop thread.
    """

    def __init__(self, app: ASGIApp, *,
                 predict: Callable[[list[dict[str, Any]]], dict[str, Any]],
                 checker: RecordChecker, route: str = "/predict",
                 inline_max_records: int = INLINE_MAX_RECORDS) -> None:
        self.app = app
        self.predict = predict
        self.checker = checker
        self.route = route
        self.inline_max_records = inline_max_records
        self._pool: ThreadPoolExecutor | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope.get("path") != self.route
                or scope.get("method") != "POST" or not _json_content(scope)):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        content = await self._answer(body)
        if content is None:
            await self.app(scope, replay_body(body, receive), send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    async def _answer(self, body: bytes) -> bytes | None:
        """The 200 body, or None when BentoML's route is to answer."""
        try:
            records = self.checker.records(json.loads(body))
        except (ValueError, RecursionError):
            return None
        if records is None:
            return None
        try:
            if len(records) <= self.inline_max_records:
                result = self.predict(records)
            else:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="dripml-predict")
                result = await asyncio.get_running_loop().run_in_executor(
                    self._pool, self.predict, records)
            return json.dumps(result, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode()
        except Exception:  # noqa: BLE001 - BentoML's route answers it (and logs it) as ever
            return None


def _json_content(scope: Scope) -> bool:
    """Whether the request says its body is JSON (or says nothing)."""
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-type":
            return bytes(value).split(b";", 1)[0].strip().lower() == b"application/json"
    return True


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
