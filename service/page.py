"""The web page for people, served by the service itself: ``GET /``, ``/static/*`` and ``GET /page/config``.

The page is plain HTML, CSS and JavaScript in ``service/static`` (no build step, nothing fetched from a
CDN), and talks to the same JSON endpoints as every other client, so what it shows is what the API
answers. The routes are added to the service's mounted FastAPI app (BentoML 1.4 ``@bentoml.asgi_app``),
which BentoML consults before its own ``/`` (the OpenAPI UI; its spec stays at ``/docs.json``).
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from service.errors import json_response
from service.settings import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX_HTML = STATIC_DIR / "index.html"


@functools.cache
def _settings() -> Settings:
    """The environment's settings, read once (the same source the service and its request guard read)."""
    return Settings.from_env()


async def index_page() -> Response:
    """``GET /``: the page (revalidated on each load, so a deployment's new page shows at once)."""
    return FileResponse(INDEX_HTML, media_type="text/html", headers={"Cache-Control": "no-cache"})


async def page_config() -> Response:
    """``GET /page/config``: the limits the page states up front, and whether adding needs the API key."""
    settings = _settings()
    return json_response({"api_key_required": bool(settings.api_key), "max_request_bytes": settings.max_request_bytes,
                          "max_image_pixels": settings.max_image_pixels, "min_image_side": settings.min_image_side,
                          "max_items": settings.max_items, "default_model": settings.default_model})


def install_page(app: FastAPI) -> None:
    """Add the page's routes to ``app`` (the service's GET app, mounted at ``/``)."""
    app.add_api_route("/", index_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/page/config", page_config, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
