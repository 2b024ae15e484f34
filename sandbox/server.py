"""The sandbox HTTP server: Wootric's token and list endpoints on loopback, plus admin endpoints.

Where the API doc leaves a behaviour open, the handler takes the reading that is harder for a
client (see the module docs of `data` and `faults`): credentials in a query string are refused,
`per_page` above 50 is clamped silently, responses and declines ignore `updated[...]` and
`sort_order`, ties within a second follow a hidden order, and /oauth/token counts toward the rate
limit without announcing it.
"""

from __future__ import annotations

import calendar
import dataclasses
import json
import logging
import re
import socket
import struct
import threading
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from .auth import TokenStore
from .data import ACCOUNT_ZONE, FILTER_FIELDS, OPERATORS, SORT_KEYS, STREAMS, Dataset
from .faults import Faults, RateLimiter
from .options import Credentials, SandboxOptions
from .stats import Stats

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
MAX_PAGE, DEFAULT_PER_PAGE, MAX_PER_PAGE = 30, 25, 50
MAX_BODY = 1 << 20
CREDENTIAL_PARAMS = frozenset({"grant_type", "username", "password", "client_id", "client_secret", "refresh_token"})
FILTER_PARAM = re.compile(r"(created|updated)\[([^\]]*)\]")
INTEGER = re.compile(r"-?[0-9]+")
NATURAL = re.compile(r"[0-9]+")

INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "The provided authorization grant is invalid, expired, revoked, does not "
    "match the redirection URI used in the authorization request, or was "
    "issued to another client.",
}
INVALID_CLIENT = {
    "error": "invalid_client",
    "error_description": "Client authentication failed due to unknown client, no client "
    "authentication included, or unsupported authentication method.",
}
INVALID_TOKEN = {"error": "invalid_token", "error_description": "Your access token is wrong"}
NOT_FOUND = {"type": "error_list", "errors": [{"status": "not_found", "message": "Not found"}]}


def _html(title: str, text: str) -> bytes:
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body><center><h1>{title}</h1>"
        f"</center><p>{text}</p><hr><center>nginx</center></body></html>"
    ).encode()


# What sits in front of the API answers 502-504 and the proxy's 200 maintenance page in HTML.
ERROR_PAGES = {
    500: (JSON_TYPE, b'{"status":500,"error":"Internal Server Error"}'),
    502: (HTML_TYPE, _html("502 Bad Gateway", "The upstream server sent an invalid response.")),
    503: (HTML_TYPE, _html("503 Service Temporarily Unavailable", "Please retry later.")),
    504: (HTML_TYPE, _html("504 Gateway Time-out", "The upstream server did not answer in time.")),
}
PROXY_PAGE_200 = _html("We'll be right back", "Wootric is undergoing scheduled maintenance.")


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class _BadRequest(Exception):
    """A list parameter the API refuses, answered as Wootric's error_list."""

    def __init__(self, field: str):
        super().__init__(field)
        self.body = {
            "type": "error_list",
            "errors": [{"status": "bad_request", "message": f"{field} does not have a valid value", "field": field}],
        }


def _list_query(stream: str, params: dict[str, str], options: SandboxOptions) -> dict:
    """The `Dataset.query` arguments of a list request, or _BadRequest for the first bad parameter."""
    page = params.get("page", "1")
    if not NATURAL.fullmatch(page) or not 1 <= int(page) <= MAX_PAGE:
        raise _BadRequest("page")
    per_page = params.get("per_page", str(DEFAULT_PER_PAGE))
    if not NATURAL.fullmatch(per_page) or int(per_page) < 1:
        raise _BadRequest("per_page")
    filters = []
    for name, value in params.items():
        match = FILTER_PARAM.fullmatch(name)
        if not match or (match[1] == "updated" and stream != "end_users"):
            continue  # responses and declines have no updated filter: ignored, not refused
        if match[2] not in OPERATORS or not INTEGER.fullmatch(value):
            raise _BadRequest(name)
        filters.append((FILTER_FIELDS[match[1]], match[2], int(value)))
    sort_key = params.get("sort_key", SORT_KEYS[stream][0])
    if sort_key not in SORT_KEYS[stream]:
        raise _BadRequest("sort_key")
    sort_order = params.get("sort_order")
    if sort_order not in (None, "asc", "desc"):
        raise _BadRequest("sort_order")
    if stream == "end_users":
        descending = sort_order == "desc"
    elif options.honour_sort_order_everywhere:
        descending = sort_order != "asc"
    else:
        descending = True  # newest first, whatever the client asked
    return {
        "filters": filters,
        "email": params.get("email") if stream == "end_users" else None,
        "sort_key": sort_key,
        "descending": descending,
        "page": int(page),
        "per_page": min(int(per_page), MAX_PER_PAGE),
    }


def _summary_dates(params: dict[str, str]) -> tuple[date, date]:
    """`date[start]` and `date[end]` (YYYY-MM-DD, inclusive, in the account's zone); without them the last month
    up to today (the doc's default, read as a calendar month back from today)."""
    today = datetime.now(ZoneInfo(ACCOUNT_ZONE)).date()
    dates = []
    for field, default in (("date[start]", _month_before(today)), ("date[end]", today)):
        text = params.get(field)
        try:
            dates.append(default if text is None else date.fromisoformat(text))
        except ValueError:
            raise _BadRequest(field) from None
    return dates[0], dates[1]


def _month_before(day: date) -> date:
    year, month = (day.year, day.month - 1) if day.month > 1 else (day.year - 1, 12)
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients with a Session expect
    server_version = "WootricSandbox/1.0"
    timeout = 60  # an idle keep-alive connection gives its thread back
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # ---------------------------------------------------------------- plumbing

    def _handle(self, method: str) -> None:
        self.sandbox: Sandbox = self.server.sandbox
        url = urlsplit(self.path)
        self._route_path, self._params = url.path, dict(parse_qsl(url.query, keep_blank_values=True))
        self._admin = self._route_path.startswith("/_sandbox/")
        self._rate_headers: dict[str, str] = {}
        self._delivery: str | None = None
        self._answered = False
        body = self._read_body()
        if not self._admin:
            self.sandbox.stats.enter()
        try:
            self._route(method, body)
        except OSError:
            self.close_connection = True  # the client went away; nothing to answer
        except Exception:
            log.exception("sandbox failed on %s %s", method, self.path)
            try:
                if not self._answered:
                    self._send(500, _json({"error": "sandbox internal error"}))
                else:
                    self.close_connection = True
            except OSError:
                self.close_connection = True
        finally:
            if not self._admin:
                self.sandbox.stats.leave()

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length", "0")
        if not NATURAL.fullmatch(length) or int(length) > MAX_BODY:
            self.close_connection = True  # cannot find the next request on this connection
            return b""
        return self.rfile.read(int(length)) if int(length) else b""

    def _send(
        self, status: int, body: bytes = b"", content_type: str = JSON_TYPE, headers: dict[str, str] | None = None
    ) -> None:
        """Answer; a pending truncated_json/stop_mid_body fault mangles a 200 body on the way out."""
        self._answered = True
        if not self._admin:
            stats = self.sandbox.stats
            stats.tally("by_status", status)
            if status in (401, 429):
                stats.add(f"served_{status}")
        length, payload = len(body), body
        delivery = self._delivery if status == 200 else None
        if delivery == "truncated_json":
            payload = body[: len(body) // 2]
            length = len(payload)
        elif delivery == "stop_mid_body":
            payload = body[: len(body) // 2]  # Content-Length still promises the whole body
        self.send_response(status)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in {**self._rate_headers, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        if delivery == "stop_mid_body":
            self.close_connection = True

    def _send_json(self, status: int, value: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, _json(value), JSON_TYPE, headers)

    def _send_error_page(self, status: int) -> None:
        content_type, body = ERROR_PAGES[status]
        if content_type == HTML_TYPE:
            self._rate_headers = {}  # a proxy's page: the API's rate-limit headers never reach the client
        self._send(status, body, content_type)

    def _drop(self, *, reset: bool) -> None:
        """Close without answering; `reset` makes it a TCP RST instead of a quiet FIN."""
        self._answered = True
        self.close_connection = True
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _route(self, method: str, body: bytes) -> None:
        path = self._route_path
        if self._admin:
            return self._serve_admin(method, path, body)
        if method == "POST" and path == "/oauth/token":
            return self._serve_token(body)
        prefix = self.sandbox.options.api_prefix + "/"
        stream = path[len(prefix) :] if path.startswith(prefix) else None
        if method == "GET" and stream in STREAMS:
            return self._serve_list(stream)
        if method == "GET" and stream in ("segments", "nps_summary"):
            return self._serve_object(stream)
        self.sandbox.stats.add("requests")
        self.sandbox.stats.tally("by_endpoint", "other")
        self._send_json(404, NOT_FOUND)

    def _scripted_fault(self, kind: str | None) -> bool:
        """Serve scripted fault `kind` if it replaces the answer (True); else leave it to the caller."""
        sandbox = self.sandbox
        if kind in ("status_500", "status_503"):
            sandbox.stats.add("injected_5xx")
            self._send_error_page(int(kind[-3:]))
        elif kind == "status_429":
            self._send(429, headers=sandbox._limiter.exhausted_headers())
        elif kind == "status_429_no_headers":
            self._rate_headers = {}
            self._send(429)
        elif kind in ("timeout", "token_timeout"):
            sandbox.faults.hold()
            self._drop(reset=False)
        elif kind == "reset":
            self._drop(reset=True)
        elif kind == "html_200":
            self._rate_headers = {}
            self._send(200, PROXY_PAGE_200, HTML_TYPE)
        elif kind == "error_envelope_200":
            self._send_json(200, {"errors": [{"message": "Internal error"}]})
        else:
            if kind in ("truncated_json", "stop_mid_body"):
                self._delivery = kind
            return False
        return True

    # --------------------------------------------------------------- endpoints

    def _serve_token(self, body: bytes) -> None:
        sandbox = self.sandbox
        sandbox.stats.add("requests")
        sandbox.stats.tally("by_endpoint", "token")
        allowed, _ = sandbox._limiter.hit()  # counts toward the limit, but announces nothing
        if not allowed:
            return self._send(429)
        if self._scripted_fault(sandbox.faults.take(path=self._route_path, stream="token", page=None)):
            return
        if CREDENTIAL_PARAMS & self._params.keys():
            return self._send_json(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "Credentials must be sent in the form-encoded request body, "
                    "not in the query string.",
                },
            )
        form_encoded = self.headers.get_content_type() == "application/x-www-form-urlencoded"
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)) if form_encoded else {}
        grant, creds = form.get("grant_type"), sandbox.credentials
        required = {
            "password": ("username", "password"),
            "client_credentials": ("client_id", "client_secret"),
            "refresh_token": ("refresh_token",),
        }.get(grant)
        if required is None:
            return self._send_json(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "The authorization grant type is not supported by the authorization server.",
                },
            )
        if not all(form.get(name) for name in required):
            return self._send_json(
                400,
                {
                    "error": "invalid_request",
                    "error_description": f"Missing required parameter: {', '.join(required)}.",
                },
            )
        if grant == "password":
            ok = (form["username"], form["password"]) == (creds.username, creds.password) and self._params.get(
                "account_token", creds.account_token
            ) == creds.account_token
        elif grant == "client_credentials":
            ok = (form["client_id"], form["client_secret"]) == (creds.client_id, creds.client_secret)
        else:
            ok = sandbox._tokens.redeem(form["refresh_token"])
        if not ok:
            error = INVALID_CLIENT if grant == "client_credentials" else INVALID_GRANT
            return self._send_json(sandbox.options.bad_credentials_status, error)
        sandbox.stats.add("token_grants")
        sandbox.stats.tally("token_grants_by_type", grant)
        self._send_json(
            200,
            sandbox._tokens.grant(refreshable=grant != "client_credentials"),
            {"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def _serve_list(self, stream: str) -> None:
        sandbox, params = self.sandbox, self._params
        sandbox.stats.add("requests")
        sandbox.stats.tally("by_endpoint", stream)
        allowed, self._rate_headers = sandbox._limiter.hit()
        if not allowed:
            return self._send(429)
        sandbox.faults.delay()
        page = params.get("page", "1")
        page_hint = int(page) if NATURAL.fullmatch(page) else None
        fault = sandbox.faults.take(path=self._route_path, stream=stream, page=page_hint)
        if self._scripted_fault(fault):
            return
        status = sandbox.faults.random_error()
        if status:
            sandbox.stats.add("injected_5xx")
            return self._send_error_page(status)
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else params.get("access_token")
        if fault == "expire_token":
            sandbox._tokens.expire(token)
        if not sandbox._tokens.valid(token):
            return self._send_json(401, INVALID_TOKEN, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        try:
            query = _list_query(stream, params, sandbox.options)
        except _BadRequest as bad:
            return self._send_json(400, bad.body)
        if fault == "repeat_previous_page":
            query["page"] -= 1
        records = sandbox.dataset.query(stream, **query)
        sandbox.faults.after_page(stream)  # before sending, so the client's next request sees the churn
        self._send(200, _json(records))
        if self._delivery is None:
            sandbox.stats.add("pages_served")
            sandbox.stats.add("records_served", len(records))

    def _serve_object(self, endpoint: str) -> None:
        """`/v1/segments` (a bare array, no paging) and `/v1/nps_summary` (one object), behind the same rate
        limit, faults and token check as the lists."""
        sandbox, params = self.sandbox, self._params
        sandbox.stats.add("requests")
        sandbox.stats.tally("by_endpoint", endpoint)
        allowed, self._rate_headers = sandbox._limiter.hit()
        if not allowed:
            return self._send(429)
        if self._scripted_fault(sandbox.faults.take(path=self._route_path, stream=endpoint, page=None)):
            return
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else params.get("access_token")
        if not sandbox._tokens.valid(token):
            return self._send_json(401, INVALID_TOKEN, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if endpoint == "segments":
            return self._send_json(200, sandbox.dataset.segments())
        try:
            first, last = _summary_dates(params)
        except _BadRequest as bad:
            return self._send_json(400, bad.body)
        self._send_json(200, sandbox.dataset.nps_summary(first, last))

    def _serve_admin(self, method: str, path: str, body: bytes) -> None:
        """Ground truth, stats, mutations and faults for out-of-process users; never rate limited."""
        sandbox = self.sandbox
        try:
            if (method, path) == ("GET", "/_sandbox/stats"):
                return self._send_json(200, sandbox.stats.snapshot())
            if (method, path) == ("POST", "/_sandbox/stats/reset"):
                sandbox.stats.reset()
                return self._send_json(200, {"ok": True})
            if method == "GET" and path.startswith("/_sandbox/records/"):
                stream = path.rsplit("/", 1)[1]
                if stream in STREAMS:
                    return self._send_json(200, sandbox.dataset.records(stream))
            if (method, path) == ("GET", "/_sandbox/credentials"):
                return self._send_json(
                    200,
                    {
                        **dataclasses.asdict(sandbox.credentials),
                        "base_url": sandbox.base_url,
                        "api_url": sandbox.api_url,
                        "token_url": sandbox.token_url,
                    },
                )
            if (method, path) == ("GET", "/_sandbox/faults"):
                return self._send_json(
                    200, {"pending": sandbox.faults.pending(), "injected": sandbox.faults.injected()}
                )
            if (method, path) == ("POST", "/_sandbox/mutate"):
                return self._send_json(200, {"ids": self._mutate(json.loads(body or b"{}"))})
            if (method, path) == ("POST", "/_sandbox/faults"):
                specs = json.loads(body or b"[]")
                for spec in specs if isinstance(specs, list) else [specs]:
                    if "consume_rate" in spec:
                        sandbox.faults.consume_rate(int(spec["consume_rate"]))
                    else:
                        sandbox.faults.script(spec["kind"], int(spec.get("count", 1)), spec.get("path"))
                return self._send_json(200, {"pending": sandbox.faults.pending()})
        except (ValueError, KeyError, TypeError, AttributeError) as problem:
            return self._send_json(400, {"error": str(problem)})
        self._send_json(404, NOT_FOUND)

    def _mutate(self, spec: dict) -> list[int]:
        dataset, stream, action = self.sandbox.dataset, spec["stream"], spec["action"]
        ids, at = spec.get("ids"), spec.get("at")
        if action == "add":
            return dataset.add(stream, n=int(spec.get("n", 10)), at=at)
        if action == "update":
            return dataset.update(stream, ids=ids, n=int(spec.get("n", 5)), at=at, fields=spec.get("fields"))
        if action == "delete":
            return dataset.delete(stream, ids=ids, n=int(spec.get("n", 3)))
        if action == "garble":
            extra = {k: spec[k] for k in ("field", "text") if k in spec}
            return dataset.garble(stream, ids=ids, n=int(spec.get("n", 1)), **extra)
        raise ValueError(f"action must be add, update, delete or garble, not {action!r}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, sandbox: Sandbox, port: int):
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((LOOPBACK, port), _Handler)

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # skips HTTPServer's reverse DNS lookup of the address
        self.server_name, self.server_port = LOOPBACK, self.server_address[1]

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every handler blocked on a keep-alive connection so stop() does not leave them behind."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        log.debug("connection from %s failed", client_address, exc_info=True)


class Sandbox:
    """A Wootric API on 127.0.0.1, served from a daemon thread: `with Sandbox(options) as sb: ...`."""

    def __init__(self, options: SandboxOptions | None = None, **overrides):
        self.options = dataclasses.replace(options or SandboxOptions(), **overrides)
        o = self.options
        self.dataset = Dataset(
            end_users=o.end_users,
            responses=o.responses,
            declines=o.declines,
            seed=o.seed,
            start=o.start,
            end=o.end,
            burst_hour=o.burst_hour,
            burst_second=o.burst_second,
            timestamp_forms=o.timestamp_forms,
        )
        self.credentials = Credentials.for_account(o.seed, o.region)
        self.stats = Stats()
        self._limiter = RateLimiter(o.rate_limit, o.rate_window)
        self._tokens = TokenStore(o.token_ttl)
        self._stopping = threading.Event()
        self.faults = Faults(o, self._limiter, self.stats, self.dataset, self._stopping)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    def start(self) -> Sandbox:
        if self._stopping.is_set():
            raise RuntimeError("a stopped sandbox cannot be restarted; make a new one")
        if self._server is None:
            self._server = _Server(self, self.options.port)
            self._port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"wootric-sandbox:{self._port}",
                daemon=True,
            )
            self._thread.start()
            log.info("sandbox listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving; requests held by latency or a timeout fault are cut short."""
        self._stopping.set()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the sandbox is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def api_url(self) -> str:
        """Where the list endpoints live: /v1 (us) or /api/v1 (eu, au)."""
        return self.base_url + self.options.api_prefix

    @property
    def token_url(self) -> str:
        return self.base_url + "/oauth/token"
