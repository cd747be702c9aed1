"""The web page: ``GET``/``HEAD`` ``/`` and ``/static/{app.js,style.css,favicon.svg}``
(``service/api/static``). It asks through the chat completions API; the server's limits are
rendered in (its text box takes ``max_question_chars`` characters, its conversation keeps
under :data:`~service.answering.limits.MAX_MESSAGES` messages), so it sends what the API
takes."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from citeqa.resources import STATIC_DIR
from service.answering.limits import MAX_MESSAGES

page_router = APIRouter()

STATIC_FILES = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@page_router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def web_page(request: Request) -> HTMLResponse:
    """The page, with the server's limits rendered in (the text box takes what the API takes)."""
    limit = request.app.state.settings.max_question_chars
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    page = page.replace("{{max_question_chars}}", str(int(limit)))
    page = page.replace("{{max_messages}}", str(MAX_MESSAGES))
    return HTMLResponse(page, headers=PAGE_HEADERS)


@page_router.api_route("/static/{name}", methods=["GET", "HEAD"], include_in_schema=False)
async def web_asset(name: str) -> FileResponse:
    if name not in STATIC_FILES:  # a fixed list: no path ever reaches the file system
        raise HTTPException(404)
    return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name], headers=PAGE_HEADERS)
