"""The FastAPI application of the risk-score API, built from :class:`Settings`.

Routes read the risk store through :class:`~predictor.api.queries.RiskReader`.
Handlers that query the store are plain functions, so FastAPI runs them in its thread
pool and a slow query does not block the event loop. ``GET /v1/risk/{component}``
is served from :class:`~predictor.api.cache.LatestScoreCache` on the event loop, because
load balancers poll it and a thread-pool hop costs more than the lookup.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from pydantic import AwareDatetime
from sqlalchemy.exc import SQLAlchemyError

from predictor import __version__
from predictor.api import readiness
from predictor.api.auth import TokenAuth
from predictor.api.cache import LatestScoreCache, render_score
from predictor.api.components import list_components
from predictor.api.metrics import build_registry
from predictor.api.queries import STORE_ERRORS, RiskReader, StoreUnavailableError
from predictor.api.schemas import (
    ComponentPage,
    Error,
    Health,
    Level,
    Readiness,
    RiskHistory,
    RiskPage,
    RiskScore,
)
from predictor.config import Settings
from predictor.hooks.breaker import breaker_states
from predictor.store import RiskStore

logger = logging.getLogger(__name__)

#: Component names as validation accepts them at ingest; no other name can be stored.
COMPONENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]*$"
MAX_PAGE = 1000
MAX_HISTORY = 10_000
MAX_OFFSET = 1_000_000_000

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "Missing or invalid bearer token."},
    422: {"model": Error, "description": "Invalid parameter; `loc` names it."},
    503: {"model": Error, "description": "The risk store cannot be read."},
}
ComponentName = Annotated[
    str, Path(description="Component name.", pattern=COMPONENT_PATTERN, max_length=255)
]

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Error, "description": "The component has no stored score."}
}


class StoreHandle:
    """The risk store, opened on first use and again after an opening failed.

    Opening on demand lets the process start, serve ``/healthz`` and report an
    unreachable store in ``/readyz`` instead of failing at startup.
    """

    def __init__(self, settings: Settings, store: RiskStore | None) -> None:
        self._settings = settings
        self._store = store
        self._reader = RiskReader(store.engine) if store is not None else None
        self._owned = store is None
        self._lock = threading.Lock()

    def reader(self) -> RiskReader:
        """Return the reader of the open store.

        Raises
        ------
        StoreUnavailableError
            If the store cannot be opened; the next call tries again.
        """
        if self._reader is not None:
            return self._reader
        with self._lock:
            if self._reader is None:
                try:
                    store = RiskStore(self._settings.store_url)
                except (SQLAlchemyError, OSError) as error:
                    raise StoreUnavailableError(f"cannot open the risk store: {error}") from error
                self._store = store
                self._reader = RiskReader(store.engine)
        return self._reader

    def store(self) -> RiskStore:
        """Return the open store, opening it first when needed."""
        self.reader()
        if self._store is None:
            raise StoreUnavailableError("the risk store is not open")
        return self._store

    def close(self) -> None:
        """Close the store if this handle opened it."""
        if self._owned and self._store is not None:
            self._store.close()


def _unknown_parameters(allowed: frozenset[str]):  # type: ignore[no-untyped-def]
    """Return a dependency that rejects query parameters outside ``allowed`` with 422."""

    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise RequestValidationError(
                [
                    {
                        "type": "unknown_parameter",
                        "loc": ("query", name),
                        "msg": f"unknown query parameter; expected one of {sorted(allowed)}",
                        "input": request.query_params.get(name),
                    }
                    for name in unknown
                ]
            )

    return check


def _next_offset(offset: int, count: int, total: int) -> int | None:
    return offset + count if offset + count < total else None


def _score(row: dict[str, Any]) -> RiskScore:
    return RiskScore.model_validate({**row, "group": row["group_name"]})


async def _refresh_forever(cache: LatestScoreCache, interval: float) -> None:
    """Refresh ``cache`` every ``interval`` seconds; log a store failure once per outage."""
    failing = False
    while True:
        try:
            await run_in_threadpool(cache.refresh)
        except STORE_ERRORS as error:
            if not failing:
                logger.error(  # noqa: TRY400 - a store outage, not a bug: no traceback
                    "latest-score cache: refresh failed, retrying: %s", error
                )
            failing = True
        else:
            if failing:
                logger.info("latest-score cache: refresh works again")
            failing = False
        await asyncio.sleep(interval)


def create_app(
    settings: Settings,
    *,
    store: RiskStore | None = None,
    cache_refresh_seconds: float = 1.0,
) -> FastAPI:
    """Build the risk-score API.

    Parameters
    ----------
    settings : Settings
        Store URL, MLflow registry, tokens (``settings.api.tokens``), whether ``/metrics``
        needs a token, and the scoring interval for readiness.
    store : RiskStore or None, default=None
        An open store to read; None opens ``settings.store_url`` on first use.
    cache_refresh_seconds : float, default=1.0
        How often the latest score per component is reread for
        ``GET /v1/risk/{component}``; a new score shows there after at most this long.

    Returns
    -------
    fastapi.FastAPI
    """
    handle = StoreHandle(settings, store)
    cache = LatestScoreCache(handle.reader)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        logger.info(
            "risk-score API starting: store %s, %d tokens, /metrics %s",
            settings.store_url.split("@")[-1],
            len(settings.api.tokens),
            "protected" if settings.api.metrics_auth else "open",
        )
        refresher = asyncio.create_task(_refresh_forever(cache, cache_refresh_seconds))
        yield
        refresher.cancel()
        with suppress(asyncio.CancelledError):
            await refresher
        handle.close()
        logger.info("risk-score API stopped")

    app = FastAPI(
        title="predictor risk-score API",
        version=__version__,
        description=(
            "Failure-risk of GPU nodes, inference replicas and routers, read from the "
            "predictor risk store. Every route except /healthz and /readyz needs a bearer "
            "token; /metrics needs one unless `api.metrics_auth` is false."
        ),
        lifespan=lifespan,
    )
    app.state.store = handle
    app.state.latest_cache = cache
    registry = build_registry(
        handle.reader,
        breakers=lambda: breaker_states(handle.store(), settings.hooks),
    )
    authenticated = [Depends(TokenAuth(settings.api.tokens))]
    metrics_dependencies = authenticated if settings.api.metrics_auth else []

    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(StoreUnavailableError)
    async def store_unavailable(request: Request, error: Exception) -> JSONResponse:
        logger.error("%s %s: risk store query failed: %s", request.method, request.url.path, error)
        return JSONResponse(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            content={"detail": "the risk store cannot be read; see the server log"},
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            content={"detail": jsonable_encoder(error.errors())},
        )

    @app.get("/healthz", response_model=Health, tags=["probes"])
    def healthz() -> Health:
        """Report that the process is alive; checks nothing else."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["probes"],
        responses={503: {"model": Readiness, "description": "A check failed."}},
    )
    def readyz(response: Response) -> Readiness:
        """Check the store, the age of the newest score and the champion model."""
        now = dt.datetime.now(dt.UTC)
        checks = [
            readiness.check_store(handle.reader),
            readiness.check_freshness(handle.reader, settings.api.scoring_interval_minutes, now),
            readiness.check_champion(settings),
        ]
        ready = all(check.ok for check in checks)
        if not ready:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(ready=ready, checks=checks)

    @app.get(
        "/v1/risk",
        response_model=RiskPage,
        tags=["risk"],
        dependencies=[
            *authenticated,
            Depends(_unknown_parameters(frozenset({"level", "group", "limit", "offset"}))),
        ],
        responses=ERRORS,
    )
    def list_risk(
        level: Annotated[list[Level] | None, Query(description="Keep these levels.")] = None,
        group: Annotated[
            list[str] | None, Query(description="Keep these groups.", max_length=100)
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> RiskPage:
        """Return the latest score of each component, ordered by component name."""
        page = handle.reader().latest_page(
            levels=level or (), groups=group or (), limit=limit, offset=offset
        )
        return RiskPage(
            items=[_score(row) for row in page.items],
            total=page.total,
            limit=limit,
            offset=offset,
            next_offset=_next_offset(offset, len(page.items), page.total),
        )

    @app.get(
        "/v1/risk/{component}",
        response_model=RiskScore,
        tags=["risk"],
        dependencies=[*authenticated, Depends(_unknown_parameters(frozenset()))],
        responses={**ERRORS, **NOT_FOUND},
    )
    async def component_risk(component: ComponentName) -> Response:
        """Return the latest score of one component."""
        body = cache.get(component)
        if body is None:
            # Not in the cache yet: a component scored since the last refresh, or none.
            row = await run_in_threadpool(lambda: handle.reader().latest(component))
            if row is None:
                raise HTTPException(
                    status.HTTP_404_NOT_FOUND,
                    detail=f"no score stored for component {component!r}",
                )
            body = render_score(row)
        return Response(body, media_type="application/json")

    @app.get(
        "/v1/risk/{component}/history",
        response_model=RiskHistory,
        tags=["risk"],
        dependencies=[
            *authenticated,
            Depends(_unknown_parameters(frozenset({"since", "until", "limit"}))),
        ],
        responses={**ERRORS, **NOT_FOUND},
    )
    def component_history(
        component: ComponentName,
        since: Annotated[
            AwareDatetime | None, Query(description="Earliest scoring time, with UTC offset.")
        ] = None,
        until: Annotated[
            AwareDatetime | None, Query(description="Latest scoring time, with UTC offset.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 500,
    ) -> RiskHistory:
        """Return the scores of one component in [since, until], newest first."""
        if since is not None and until is not None and since > until:
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("query", "since"),
                        "msg": f"since {since.isoformat()} is after until {until.isoformat()}",
                        "input": since.isoformat(),
                    }
                ]
            )
        reader = handle.reader()
        rows = reader.history(component, since=since, until=until, limit=limit)
        if not rows and reader.latest(component) is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, detail=f"no score stored for component {component!r}"
            )
        return RiskHistory(component=component, items=[_score(row) for row in rows])

    @app.get(
        "/v1/components",
        response_model=ComponentPage,
        tags=["components"],
        dependencies=[
            *authenticated,
            Depends(_unknown_parameters(frozenset({"limit", "offset"}))),
        ],
        responses=ERRORS,
    )
    def components(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> ComponentPage:
        """Return the known components with their group and newest telemetry time."""
        items, total = list_components(settings, handle.reader(), limit=limit, offset=offset)
        return ComponentPage(
            items=items,
            total=total,
            limit=limit,
            offset=offset,
            next_offset=_next_offset(offset, len(items), total),
        )

    @app.get(
        "/metrics",
        tags=["metrics"],
        dependencies=[*metrics_dependencies, Depends(_unknown_parameters(frozenset()))],
        responses={
            200: {
                "content": {
                    CONTENT_TYPE_PLAIN_0_0_4.split(";")[0]: {"schema": {"type": "string"}}
                },
                "description": "Prometheus text exposition format 0.0.4.",
            },
            **ERRORS,
        },
        response_class=Response,
    )
    def metrics() -> Response:
        """Return the risk gauges and scoring-run figures in Prometheus text format."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return app
