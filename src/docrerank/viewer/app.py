"""``docrerank view``: a local web app over a run directory, server-rendered (Jinja2) with a little script.

Pages: the item list with filters (``/``), each page's image and text beside its queries (``/page/N``), a
review of a seeded random sample (``/review/N``), the run's stats as charts (``/stats``). Corrections are
posted as JSON to ``/api/corrections`` and appended to ``RUN/corrections.jsonl`` (``pipeline.corrections``).

Safety: files served are the store's page images of the run's pages (looked up by page id, never by a path
from the request) and the two static files shipped with the package; bodies are bounded; a write needs the
token the server put in its own pages (a custom header, which another origin cannot send without a CORS
preflight this app never grants) and an Origin of this server when the browser sends one; the Host header
must name this server (no DNS rebinding); a run being generated, or ``read_only``, refuses every write.
"""

from __future__ import annotations

import difflib
import secrets
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from docrerank.evaluation.report import quality_view, read_quality, template_environment
from docrerank.pipeline.corrections import Correction, append_correction, in_force
from docrerank.viewer.items import Filters, Item, RunView

__all__ = ["MAX_BODY", "create_app"]

MAX_BODY = 16 * 1024  # bytes of a correction request: a query and a few ids
STATIC = {"viewer.js": "text/javascript", "viewer.css": "text/css"}
TOKEN_HEADER = "x-docrerank-token"
ROWS_SHOWN = 500


class CorrectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["answerable", "unanswerable", "edit", "drop"]
    page_id: str
    query_id: str
    text: str | None = None
    by: Literal["person", "review"] = "person"


def create_app(view: RunView, *, read_only: bool = False, hosts: list[str] | None = None, token: str | None = None):
    """The FastAPI app over ``view``. ``hosts``: the Host header values accepted (default: loopback names)."""
    app = FastAPI(title="docrerank view", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts or ["127.0.0.1", "localhost"])
    env = template_environment("docrerank.viewer")
    token = token or secrets.token_urlsafe(24)

    def writable() -> bool:
        return not read_only and not view.in_progress

    @app.middleware("http")
    async def follow_a_running_generation(request: Request, call_next):
        if request.method == "GET" and not request.url.path.startswith(("/static/", "/image/")) and view.in_progress:
            view.reload()  # the shards written since: a run being generated is shown as it grows
        return await call_next(request)

    def render(name: str, **context: Any) -> HTMLResponse:
        context |= {"token": token, "writable": writable(), "run": str(view.root), "pages": len(view.page_ids)}
        return HTMLResponse(env.get_template(name).render(**context))

    def page_number(number: int) -> str:
        if not 1 <= number <= len(view.page_ids):
            raise HTTPException(404, f"no page {number}: the run has {len(view.page_ids)}")
        return view.page_ids[number - 1]

    def filters(request: Request) -> Filters:
        params = request.query_params
        return Filters(
            stage=params.get("stage", ""),
            status=params.get("status", ""),
            kind=params.get("kind", ""),
            generator=params.get("generator", ""),
            property=params.get("property", ""),
            min_score=_float(params.get("min_score")),
            max_score=_float(params.get("max_score")),
            q=params.get("q", ""),
        )

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        chosen = filters(request)
        numbers = {pid: n for n, pid in enumerate(view.page_ids, start=1)}
        rows = [(numbers[i.record.page_id], i) for i in view.all_items() if chosen.keep(i)]
        return render(
            "index.html.j2", filters=chosen, choices=view.choices(), rows=rows[:ROWS_SHOWN], matched=len(rows),
            query=str(request.url.query), readings=view.readings(),
        )  # fmt: skip

    @app.get("/page/{number}", response_class=HTMLResponse)
    def page(number: int, request: Request):
        page_id = page_number(number)
        chosen = filters(request)
        return render(
            "page.html.j2", number=number, **_page_context(view, page_id), filters=chosen,
            query=str(request.url.query),
        )  # fmt: skip

    @app.get("/review", response_class=HTMLResponse)
    def review_start(seed: int = 0, size: int = 50):
        return RedirectResponse(f"/review/1?seed={seed}&size={size}", status_code=303)

    @app.get("/review/{index}", response_class=HTMLResponse)
    def review(index: int, seed: int = 0, size: int = 50):
        sample = view.review_sample(seed, size)
        if not sample:
            return render("review.html.j2", item=None, index=index, total=0, seed=seed, size=size)
        if not 1 <= index <= len(sample):
            raise HTTPException(404, f"the review has {len(sample)} items")
        item = sample[index - 1]
        numbers = {pid: n for n, pid in enumerate(view.page_ids, start=1)}
        return render(
            "review.html.j2", item=item, index=index, total=len(sample), seed=seed, size=size,
            number=numbers[item.record.page_id], page=view.store.get(item.record.page_id),
            reading=view.readings().get(item.key), done=_reviewed(view, sample),
        )  # fmt: skip

    @app.get("/stats", response_class=HTMLResponse)
    def stats():
        quality = quality_view(read_quality(run=view.root)) if (view.root / "stats.json").is_file() else None
        corrections = view.corrections()
        return render(
            "stats.html.j2", quality=quality, counts=sorted(view.counts().items()),
            corrections=corrections, active=in_force(corrections), verifier=_verifier_by_readings(view),
        )  # fmt: skip

    @app.get("/image/{page_id}")
    def image(page_id: str):
        if page_id not in view.items or page_id not in view.store:
            raise HTTPException(404, "not a page of this run")
        path = view.store.image_path(view.store.get(page_id))
        return Response(path.read_bytes(), media_type=_image_type(path))

    @app.get("/static/{name}")
    def static(name: str):
        if name not in STATIC:
            raise HTTPException(404, "no such file")
        return Response(
            resources.files("docrerank.viewer").joinpath("static", name).read_bytes(), media_type=STATIC[name]
        )

    async def checked_body(request: Request) -> bytes:
        if not writable():
            raise HTTPException(403, "read-only: the run is being generated, or the viewer was started --read-only")
        if request.headers.get(TOKEN_HEADER) != token:
            raise HTTPException(403, "a write needs this server's token (sent by its own pages)")
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise HTTPException(403, f"a write from another origin ({origin}) is refused")
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            raise HTTPException(413, f"a correction is at most {MAX_BODY} bytes")
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > MAX_BODY:
                raise HTTPException(413, f"a correction is at most {MAX_BODY} bytes")
        return body

    @app.post("/api/corrections")
    async def correct(request: Request):
        try:
            asked = CorrectionRequest.model_validate_json(await checked_body(request))
        except ValidationError as exc:
            raise HTTPException(422, str(exc).splitlines()[0]) from None
        item = next((i for i in view.items.get(asked.page_id, []) if i.record.query_id == asked.query_id), None)
        if item is None:
            raise HTTPException(404, f"no query {asked.query_id} on page {asked.page_id} in this run")
        text = (asked.text or "").strip()
        if asked.action == "edit" and not text:
            raise HTTPException(422, "an edit needs the new text")
        correction = Correction(
            action=asked.action, page_id=item.record.page_id, query=item.record.text, kind=item.record.kind,
            text=text if asked.action == "edit" else None, record=item.record, by=asked.by,
            status=f"{item.status} at {item.stage}",
        )  # fmt: skip
        append_correction(view.root, correction)
        return JSONResponse({"id": correction.id}, status_code=201)

    @app.post("/api/corrections/{correction_id}/undo")
    async def undo(correction_id: str, request: Request):
        await checked_body(request)
        target = next((c for c in in_force(view.corrections()) if c.id == correction_id), None)
        if target is None:
            raise HTTPException(404, f"no correction {correction_id} in force")
        undone = Correction(action="undo", page_id=target.page_id, query=target.query, undoes=target.id)
        append_correction(view.root, undone)
        return JSONResponse({"id": undone.id}, status_code=201)

    return app


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _image_type(path: Path) -> str:
    return {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}.get(
        path.suffix.lower(), "application/octet-stream"
    )


def changed_words(base: str, text: str) -> list[tuple[str, bool]]:
    """``text`` as (words, changed) runs against ``base``: what a negative changed of its positive."""
    old, new = base.split(), text.split()
    runs: list[tuple[str, bool]] = []
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if j2 > j1:
            runs.append((" ".join(new[j1:j2]), tag != "equal"))
    return runs


def _page_context(view: RunView, page_id: str) -> dict[str, Any]:
    """A page, its items grouped under their positives, their readings and corrections, its mined pages."""
    items = view.items.get(page_id, [])
    by_id = {i.record.query_id: i for i in items}
    positives = [i for i in items if i.record.kind == "positive"]
    children: dict[str, list[Item]] = {}
    for item in items:
        if item.record.parent_id:
            children.setdefault(item.record.parent_id, []).append(item)
    groups = []
    for positive in positives:
        kids = children.get(positive.record.query_id, [])
        groups.append(
            {
                "positive": positive,
                "rephrased": [k for k in kids if k.record.kind == "rephrased"],
                "negatives": [
                    (k, changed_words(positive.record.text, k.record.text)) for k in kids if k.record.kind == "negative"
                ],  # fmt: skip
            }
        )
    orphans = [i for i in items if i.record.kind != "positive" and i.record.parent_id not in by_id]
    corrections = [c for c in view.corrections() if c.page_id == page_id]
    active = {c.id for c in in_force(corrections)}
    latest: dict[tuple[str, str], list] = {}
    for correction in corrections:
        if correction.id in active:
            latest.setdefault(correction.key, []).append(correction)
    return {
        "page": view.store.get(page_id),
        "groups": groups,
        "orphans": orphans,
        "failures": view.failures.get(page_id, []),
        "corrections": corrections,
        "active": active,
        "by_item": latest,
        "mined": view.mined.get(page_id, []),
    }


def _reviewed(view: RunView, sample: list[Item]) -> int:
    readings = view.readings()
    return sum(item.key in readings for item in sample)


def _verifier_by_readings(view: RunView) -> dict[str, Any]:
    """The verifier measured on a person's readings of negatives: of the negatives it kept (passed verification)
    that a person read, how many the person found unanswerable (its precision)."""
    readings = view.readings()
    kept = read = right = 0
    for item in view.all_items():
        if item.record.kind != "negative" or item.record.verdict is None:
            continue
        accepted = not (item.status == "rejected" and item.stage == "negatives_verified")
        reading = readings.get(item.key)
        kept += accepted
        if reading is not None and accepted:
            read += 1
            right += reading.action == "unanswerable"
    return {"accepted": kept, "read": read, "unanswerable": right, "precision": right / read if read else None}
