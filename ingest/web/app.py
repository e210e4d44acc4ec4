"""``neurflow serve``: the local web explorer (Starlette + Jinja2, served by uvicorn).

Pages are built from named queries of the library (:mod:`.views`); images come from
:class:`.media.MediaStore`, which serves only files that Patch and Image nodes of the
graph name. Nothing is fetched from outside: the style sheet and the one script ship in
``static/``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from neurflow.ingest.errors import InputError, NeurflowError

from . import views
from .media import MediaStore
from .render import ServerLinks, environment

__all__ = ["create_app", "is_loopback"]

# Pages may load only what this server sends (and inline data: icons).
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(run: views.Runner, *, db_label: str, data_roots: Sequence[Path] = ()) -> Starlette:
    """The explorer as an ASGI application.

    Args:
        run: the query library, ``run(name, params) -> list of dict rows``
            (:func:`neurflow.ingest.web.views.runner`).
        db_label: what the header says the explorer reads (URI and database; never a password).
        data_roots: folders that image ids are relative to (``--data``).
    """
    env = environment()
    links = ServerLinks()
    media = MediaStore(run, data_roots)
    has_labels = views.has_query("find_concept")

    def page(template: str, code: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(links=links, db_label=db_label, has_labels=has_labels, **context)
        return HTMLResponse(html, status_code=code, headers={"Content-Security-Policy": _CSP})

    def guarded(fn):
        def endpoint(request: Request) -> Response:
            try:
                return fn(request)
            except views.NotFound as exc:
                return page("error.html", 404, status="Not found", message=str(exc))
            except InputError as exc:
                return page("error.html", 400, status="Bad request", message=str(exc))
            except NeurflowError as exc:  # the database failed; messages never hold credentials
                return page("error.html", 502, status="Database error", message=str(exc))

        endpoint.__name__ = fn.__name__
        return endpoint

    def required(request: Request, name: str) -> str:
        value = request.query_params.get(name, "").strip()
        if not value:
            raise InputError(f"this page needs the '{name}' parameter")
        return value

    @guarded
    def classes(request: Request) -> Response:
        return page("classes.html", v=views.classes_view(run))

    @guarded
    def circuit(request: Request) -> Response:
        return page("circuit.html", v=views.circuit_view(run, required(request, "class")), plots=[])

    @guarded
    def group(request: Request) -> Response:
        return page("group.html", v=views.group_view(run, required(request, "uid"), media))

    @guarded
    def compare(request: Request) -> Response:
        all_classes = run("classes", {})
        a, b = request.query_params.get("a"), request.query_params.get("b")
        v = views.compare_view(run, a, b) if a and b else None
        return page("compare.html", v=v, classes=all_classes)

    @guarded
    def concepts(request: Request) -> Response:
        return page("concepts.html", v=views.concepts_view(run))

    @guarded
    def concept(request: Request) -> Response:
        return page("concept.html", v=views.concept_view(run, required(request, "uid")))

    @guarded
    def biased(request: Request) -> Response:
        params: dict[str, Any] = {}
        if request.query_params.get("threshold"):
            try:
                params["threshold"] = float(request.query_params["threshold"])
            except ValueError:
                raise InputError("threshold must be a number") from None
        return page("biased.html", v=views.biased_view(run, params))

    @guarded
    def search(request: Request) -> Response:
        q = request.query_params.get("q", "")
        return page("search.html", v=views.search_view(run, q), q=q)

    def image(request: Request) -> Response:
        uid = request.query_params.get("uid", "")
        kind = request.query_params.get("kind", "thumb")
        try:
            size = int(request.query_params.get("size", "96"))
        except ValueError:
            size = -1
        try:
            pic = media.picture(uid, kind, size) if uid else None
        except NeurflowError:
            return Response("database error", status_code=502, media_type="text/plain")
        if pic is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(pic.data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(("/static/", "/img")):
            return Response("not found", status_code=404, media_type="text/plain")
        return page("error.html", 404, status="Not found", message=f"no page at {request.url.path}")

    static_dir = resources.files("neurflow.ingest.web") / "static"
    routes = [
        Route("/", classes),
        Route("/circuit", circuit),
        Route("/group", group),
        Route("/compare", compare),
        Route("/concepts", concepts),
        Route("/concept", concept),
        Route("/biased", biased),
        Route("/search", search),
        Route("/img", image),
        Mount("/static", app=StaticFiles(directory=str(static_dir)), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.state.media = media
    return app
