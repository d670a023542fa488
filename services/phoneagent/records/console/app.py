"""The operator console: an aiohttp app with server-rendered pages (Jinja2) and a little JS.

Pages: the calls list (newest first, filtered by outcome, direction, day and agent; live calls
marked, the list refreshing itself), one call (the transcript as a chat with what barge-ins cut
off, the recording with a player that follows the transcript, tools, transfers, policy
decisions, the summary, the per-turn latency waterfall with the call's p50/p95) and the
compliance view (audit decisions from PA_AUDIT filtered by subject, rule and verdict; CSV).
``/api/...`` answers the same data as JSON. Everything asks for the API token
(:mod:`.auth`); the only actions, hang up and transfer, go through the CallControl API's own
code (:meth:`CallControl.hang_up`, :meth:`CallControl.transfer`) and are audited like its calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import jinja2
from aiohttp import web

from phoneagent.records import builder
from phoneagent.records.console import vendor, views
from phoneagent.records.console.auth import COOKIE, TokenAuth
from phoneagent.records.control_api import LOOPBACK_CALLER, CallControl, token_id
from phoneagent.records.store import CallFilter, RecordStore
from phoneagent.runtime import subjects
from phoneagent.runtime.audit_query import AuditFilter, parse_decision, parse_since, query_audit
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
LIST_LIMIT = 200
AUDIT_LIMIT = 5000
AUDIT_SUBJECTS = ("dial", "transfer", "disclosure", "recording", "escalation", "opt_out", "api")
DIRECTIONS = ("inbound", "outbound")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' https:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HTTP_STATUS = {
    ErrorKind.INVALID_ARGUMENT: 400,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.POLICY_DENIED: 403,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TIMEOUT: 504,
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ConsoleConfig:
    auth: TokenAuth
    secure_cookie: bool = False


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(("html",)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ms"] = lambda v: "–" if v is None else f"{v:.0f}"
    return env


def _day(text: str) -> tuple[int, int]:
    """[start, end) of a UTC day given as YYYY-MM-DD, in Unix ns."""
    try:
        start = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidArgument("date must look like 2026-06-02") from None
    return int(start.timestamp()) * 10**9, int((start + timedelta(days=1)).timestamp()) * 10**9


def call_filter(query: Any) -> CallFilter:
    """The calls list's filter from the query string; a bad value is an InvalidArgument."""
    outcome, direction = query.get("outcome", ""), query.get("direction", "")
    agent, date = query.get("agent", "")[:100], query.get("date", "")
    if outcome and outcome not in builder.OUTCOMES:
        raise InvalidArgument(f"outcome must be one of {', '.join(builder.OUTCOMES)}")
    if direction and direction not in DIRECTIONS:
        raise InvalidArgument("direction must be inbound or outbound")
    start, end = _day(date) if date else (0, 0)
    live_only = query.get("live", "") == "1"
    return CallFilter(outcome, direction, agent, start, end, live_only)


class Console:
    def __init__(
        self, store: RecordStore, api: CallControl, js: Callable[[], Any], config: ConsoleConfig
    ) -> None:
        self.store = store
        self.api = api
        self.js = js
        self.config = config
        self.templates = _environment()
        self.runner: web.AppRunner | None = None
        self.url = ""
        if not vendor.available():
            log.warning("console chart library missing; run python -m phoneagent.records.console.vendor")

    # --- serving ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers, self._authenticate], client_max_size=64 * 1024)
        app.add_routes(
            [
                web.get("/", self._index),
                web.get("/login", self._login_form),
                web.post("/login", self._login),
                web.post("/logout", self._logout),
                web.get("/calls", self._calls),
                web.get("/calls/{call_id}", self._call),
                web.get("/calls/{call_id}/recording", self._recording),
                web.post("/calls/{call_id}/hangup", self._hang_up),
                web.post("/calls/{call_id}/transfer", self._transfer),
                web.get("/compliance", self._compliance),
                web.get("/compliance.csv", self._compliance_csv),
                web.get("/api/calls", self._api_calls),
                web.get("/api/calls/{call_id}", self._api_call),
                web.get("/api/audit", self._api_audit),
                web.static("/static", HERE / "static", follow_symlinks=False),
            ]
        )
        return app

    async def start(self, host: str, port: int) -> str:
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        server = getattr(site, "_server", None)
        bound = server.sockets[0].getsockname()[1] if server is not None and server.sockets else port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound}/"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # --- middlewares --------------------------------------------------------------------------
    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # not "no-referrer": with it a browser's form posts say ``Origin: null``
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        if isinstance(response, web.HTTPException):
            raise response
        return response

    def caller(self, request: web.Request) -> str | None:
        """Who is asking, for the audit: the token's id, or None when the request is refused."""
        auth = self.config.auth
        if auth.open:
            return LOOPBACK_CALLER
        if auth.check_header(request.headers.get("Authorization", "")):
            return token_id(auth.token)
        if auth.check_session(request.cookies.get(COOKIE, "")):
            return "console " + token_id(auth.token)
        return None

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/static/") or path == "/login":
            return await handler(request)
        caller = self.caller(request)
        if caller is None:
            if request.method == "GET" and not _is_data(path):
                raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
            raise web.HTTPUnauthorized(
                text="missing or wrong API token", headers={"WWW-Authenticate": 'Bearer realm="phone-agent"'}
            )
        if request.method == "POST" and not self._same_origin(request):
            raise web.HTTPForbidden(text="cross-origin request refused")
        return await handler(request)

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None or request.headers.get("Authorization"):
            return True  # not a browser's cross-site form, or a bearer-token client
        return origin == f"{request.scheme}://{request.host}"

    # --- rendering ----------------------------------------------------------------------------
    def render(self, name: str, status: int = 200, **context: Any) -> web.Response:
        html = self.templates.get_template(name).render(
            chart=vendor.available(), token_required=not self.config.auth.open, **context
        )
        return web.Response(text=html, status=status, content_type="text/html")

    # --- login --------------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/calls")

    async def _login_form(self, request: web.Request) -> web.StreamResponse:
        return self.render("login.html", next=_local(request.query.get("next", "")), error="")

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        nxt = _local(str(form.get("next", "")))
        if self.config.auth.open:
            raise web.HTTPSeeOther(nxt)
        if not self._same_origin(request):
            raise web.HTTPForbidden(text="cross-origin request refused")
        ok = self.config.auth.check_token(str(form.get("token", "")))
        await self.api.audit(
            "ConsoleLogin",
            token_id(self.config.auth.token) if ok else "unauthenticated",
            "",
            "OK" if ok else "UNAUTHENTICATED",
        )
        if not ok:
            return self.render("login.html", status=401, next=nxt, error="That is not the API token.")
        response = web.HTTPSeeOther(nxt)
        response.set_cookie(
            COOKIE,
            self.config.auth.new_session(),
            max_age=self.config.auth.session_s,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.config.secure_cookie,
        )
        raise response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    # --- calls --------------------------------------------------------------------------------
    async def _search(self, request: web.Request) -> tuple[CallFilter, list[dict[str, Any]]]:
        try:
            flt = call_filter(request.query)
        except InvalidArgument as exc:
            raise web.HTTPBadRequest(text=exc.message) from None
        recs = await asyncio.to_thread(self.store.search, flt, LIST_LIMIT)
        return flt, [views.call_row(r) for r in recs]

    async def _calls(self, request: web.Request) -> web.StreamResponse:
        flt, rows = await self._search(request)
        if request.query.get("fragment") == "rows":
            return self.render("_rows.html", rows=rows)
        agents = await asyncio.to_thread(self.store.agents)
        return self.render(
            "calls.html",
            rows=rows,
            flt=flt,
            date=request.query.get("date", ""),
            agents=agents,
            outcomes=builder.OUTCOMES,
            directions=DIRECTIONS,
        )

    async def _record(self, request: web.Request) -> builder.CallRecord:
        call_id = request.match_info["call_id"]
        try:
            subjects.check_id(call_id)
        except InvalidArgument as exc:
            raise web.HTTPBadRequest(text=exc.message) from None
        rec = await asyncio.to_thread(self.store.get, call_id)
        if rec is None:
            raise web.HTTPNotFound(text="no such call")
        return rec

    async def _call(self, request: web.Request, message: str = "", status: int = 200) -> web.StreamResponse:
        rec = await self._record(request)
        view = views.call_view(rec)
        name = "_call_body.html" if request.query.get("fragment") == "body" else "call.html"
        return self.render(name, status=status, call=view, message=message)

    async def _recording(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        uri = str(rec.recording.get("uri", ""))
        if not uri:
            raise web.HTTPNotFound(text="this call has no recording")
        parsed = urlparse(uri)
        if parsed.scheme == "s3":
            raise web.HTTPFound(await asyncio.to_thread(_presigned, parsed.netloc, parsed.path.lstrip("/")))
        path = Path(parsed.path if parsed.scheme == "file" else uri)
        if parsed.scheme not in ("", "file") or path.suffix != ".wav" or not path.is_file():
            raise web.HTTPNotFound(text="the recording is not on this service's disk")
        return web.FileResponse(path, headers={"Content-Type": "audio/wav"})

    async def _act(
        self, request: web.Request, method: str, action: Awaitable[None], done: str
    ) -> web.StreamResponse:
        call_id = request.match_info["call_id"]
        outcome, message, status = "OK", done, 200
        try:
            await action
        except PhoneAgentError as exc:
            outcome, message, status = exc.kind.name, exc.message, _HTTP_STATUS.get(exc.kind, 500)
        finally:
            await self.api.audit(method, self.caller(request) or "unauthenticated", call_id, outcome)
        if "application/json" in request.headers.get("Accept", ""):
            return web.json_response({"ok": outcome == "OK", "message": message}, status=status)
        return await self._call(request, message=message, status=status)

    async def _hang_up(self, request: web.Request) -> web.StreamResponse:
        call_id = request.match_info["call_id"]
        return await self._act(request, "HangUp", self.api.hang_up(call_id), "Hang-up sent.")

    async def _transfer(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        call_id = request.match_info["call_id"]
        target, warm = str(form.get("target", "")).strip()[:200], form.get("warm") == "1"
        return await self._act(
            request, "TransferCall", self.api.transfer(call_id, target, warm), "Transfer started."
        )

    # --- compliance ---------------------------------------------------------------------------
    async def _audit_rows(
        self, request: web.Request
    ) -> tuple[dict[str, str], list[dict[str, str]], list[str]]:
        q = request.query
        form = {k: q.get(k, "")[:100] for k in ("subject", "rule", "decision", "since", "call_id")}
        form["since"] = form["since"] or "7d"
        try:
            if form["subject"] and form["subject"] not in AUDIT_SUBJECTS:
                raise InvalidArgument(f"subject must be one of {', '.join(AUDIT_SUBJECTS)}")
            if form["call_id"]:
                subjects.check_id(form["call_id"])
            flt = AuditFilter(
                call_id=form["call_id"],
                since=parse_since(form["since"]),
                decision=parse_decision(form["decision"]),
                subject=form["subject"],
                limit=AUDIT_LIMIT,
            )
        except InvalidArgument as exc:
            raise web.HTTPBadRequest(text=exc.message.replace("--", "")) from None
        try:
            records = await query_audit(self.js(), flt)
        except Exception as exc:  # noqa: BLE001 - the page says so; the service goes on
            log.warning("audit query failed", extra={"error": type(exc).__name__})
            raise web.HTTPServiceUnavailable(text="the audit stream cannot be read now") from None
        rows = [views.audit_row(r) for r in reversed(records)]  # newest first
        rules = sorted({r["rule"] for r in rows if r["rule"]})
        if form["rule"]:
            rows = [r for r in rows if r["rule"] == form["rule"]]
        return form, rows, rules

    async def _compliance(self, request: web.Request) -> web.StreamResponse:
        form, rows, rules = await self._audit_rows(request)
        return self.render(
            "compliance.html",
            form=form,
            rows=rows,
            rules=rules,
            subjects=AUDIT_SUBJECTS,
            query=request.query_string,
        )

    async def _compliance_csv(self, request: web.Request) -> web.StreamResponse:
        _, rows, _ = await self._audit_rows(request)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return web.Response(
            text=views.audit_csv(rows),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"'},
        )

    # --- JSON ---------------------------------------------------------------------------------
    async def _api_calls(self, request: web.Request) -> web.StreamResponse:
        _, rows = await self._search(request)
        return web.json_response({"calls": rows})

    async def _api_call(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        return web.json_response(views.call_view(rec))

    async def _api_audit(self, request: web.Request) -> web.StreamResponse:
        _, rows, _ = await self._audit_rows(request)
        return web.json_response({"decisions": rows})


def _is_data(path: str) -> bool:
    """Paths that answer data rather than a page: refused outright without the token."""
    return path.startswith("/api/") or path.endswith((".csv", "/recording"))


def _local(target: str) -> str:
    """A redirect target on this site only (a path, never another origin)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/calls"
    return target


def _presigned(bucket: str, key: str) -> str:
    """A short-lived URL of a recording in an S3-compatible store (extra ``s3``)."""
    try:
        import boto3
    except ImportError:
        raise web.HTTPNotFound(text="the recording is in S3: install the s3 extra to play it here") from None
    url: str = boto3.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )
    return url
