"""The web page's application: FastAPI, the API router, the pages, static files, security.

:func:`create_app` builds it from :class:`UiSettings`; its lifespan starts the run queue's
worker and, on shutdown, stops it and every endpoint deployed from the page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from dripml.ui import api_routes, security
from dripml.ui.services import Services, create_services
from dripml.ui.settings import UiSettings

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: UiSettings, *,
               services_factory: Callable[[UiSettings], Services] = create_services
               ) -> FastAPI:
    """The app for ``settings`` (tests use it with FastAPI's TestClient).

    The services are built and the queue started in the lifespan (``with TestClient(app)``
    or a server's startup), so creating the app starts nothing.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = services_factory(settings)
        app.state.services = services
        services.start()
        try:
            yield
        finally:
            services.stop()

    app = FastAPI(title="dripml", version=_version(),
                  description="Run a scientist's recipe on your data, compare the models, "
                              "deploy one. Every POST needs the X-CSRF-Token header (the "
                              "dripml_csrf cookie's value) unless it carries the bearer token.",
                  docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None,
                  lifespan=lifespan)
    app.state.settings = settings
    app.add_middleware(security.SecurityMiddleware, settings=settings)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    app.include_router(api_routes.router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness and readiness (no authentication)."""
        return {"status": "ok"}

    @app.get("/login", tags=["auth"], response_class=Response)
    def login(request: Request, token: str = "", next: str = "/") -> Response:
        """Set the login cookie from ``?token=`` (the UI's token) and go to ``next``."""
        import hmac

        expected = settings.token_value
        if not expected or not token or not hmac.compare_digest(token.encode(),
                                                                expected.encode()):
            return JSONResponse({"detail": "login: the token is missing or wrong; open "
                                           "/login?token=<DRIPML_UI_TOKEN>"}, status_code=401)
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(security.TOKEN_COOKIE, security.session_cookie_value(expected),
                            httponly=True, samesite="lax",
                            secure=request.url.scheme == "https", path="/")
        return response

    pages = _pages_router()
    if pages is not None:
        app.include_router(pages)
    return app


def _pages_router() -> Any:
    """The pages (``dripml.ui.pages.router``), when that module is there."""
    try:
        from dripml.ui import pages
    except ModuleNotFoundError as error:
        if error.name != "dripml.ui.pages":
            raise
        return None
    return pages.router


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dripml")
    except PackageNotFoundError:
        return "0"
