"""What both stand-ins share: a loopback HTTP server, fault injection and a request log.

Each stand-in subclasses ``StandInServer`` and answers ``handle_api``; this
module owns everything around that answer: reading the request, the
``/_sandbox/`` control routes, the faults a test queued up, the log, and
starting and stopping the server. Keeping it in one place means a fault or a
connection detail behaves the same on both sides of the pipeline.
"""

from __future__ import annotations

import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from email.message import Message
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson
from isal import igzip, isal_zlib

CONTROL_PREFIX = "/_sandbox/"


class HttpError(Exception):
    """An error answer, raised from anywhere in a handler and sent as the stand-in's error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Response:
    """One answer. ``log`` holds extra fields for this request's entry in the request log."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)
    content_type: str = "application/json"


def json_response(payload: Any, status: int = 200, **log: Any) -> Response:
    """A JSON answer; ``payload`` may already be serialized bytes."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Response(status, body, log=log)


class Request:
    """One received request, with its body decoded and parsed at most once."""

    def __init__(self, method: str, target: str, headers: Message, body: bytes) -> None:
        parts = urlsplit(target)
        self.method = method
        self.path = parts.path
        self.query: dict[str, str] = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.headers = headers
        self.body = body

    @cached_property
    def segments(self) -> tuple[str, ...]:
        """Path segments, percent-decoded one by one so that an id may contain ``%2F``."""
        return tuple(unquote(part) for part in self.path.strip("/").split("/"))

    @property
    def is_gzip(self) -> bool:
        return self.headers.get("Content-Encoding", "").strip().lower() == "gzip"

    @cached_property
    def content(self) -> bytes:
        """The body with its ``Content-Encoding`` undone."""
        if not self.is_gzip:
            return self.body
        try:
            return igzip.decompress(self.body)  # as gzip does, in under half its time
        except (OSError, EOFError, isal_zlib.error) as exc:
            raise HttpError(400, f"Body is not valid gzip: {exc}") from None

    @cached_property
    def json(self) -> Any:
        """The body parsed as JSON; an empty or invalid body is a 400."""
        if not self.content:
            raise HttpError(400, "Request body is empty; a JSON body is required")
        try:
            return orjson.loads(self.content)
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, f"Request body is not valid JSON: {exc}") from None

    def json_or_none(self) -> Any:
        """The parsed body, or None when it is not JSON (the log records bad requests too)."""
        try:
            return self.json
        except HttpError:
            return None


def _body_bytes(body: bytes | str | dict | list | None) -> bytes | None:
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return orjson.dumps(body)


@dataclass(slots=True)
class Fault:
    """One queued misbehaviour; see ``StandInServer.inject`` for what each knob means."""

    status: int | None = None
    times: int = 1
    retry_after: float | int | str | None = None
    delay: float | None = None
    path_contains: str | None = None
    body: bytes | None = None
    truncate: bool = False
    reset: bool = False
    after: int = 0

    def __post_init__(self) -> None:
        if self.status is None and self.delay is None and not self.truncate and not self.reset:
            raise ValueError("a fault needs status, delay, truncate or reset")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status {self.status} is not an HTTP status")
        if self.reset and (self.status is not None or self.truncate):
            raise ValueError("reset sends no answer, so it cannot have a status or truncate")
        if self.times < 1 or self.after < 0 or (self.delay is not None and self.delay < 0):
            raise ValueError("times must be at least 1; after and delay must not be negative")

    @property
    def kind(self) -> str:
        """How the log names this fault."""
        if self.reset:
            return "reset"
        if self.truncate:
            return "truncate"
        return "status" if self.status is not None else "delay"

    def matches(self, path: str) -> bool:
        return self.path_contains is None or self.path_contains in path

    def describe(self) -> dict[str, Any]:
        description = asdict(self)
        description["body"] = self.body.decode(errors="replace") if self.body else None
        return description


class FaultQueue:
    """Faults waiting for requests, taken in the order they were queued.

    Every matching request counts towards each fault's ``after``, whichever
    fault (if any) ends up answering it, so two faults can be scheduled
    independently ("the 3rd request fails" and "the 5th is slow").
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, path: str) -> Fault | None:
        """The fault that answers this request, if any; uses up one of its ``times``."""
        chosen: Fault | None = None
        with self._lock:
            for fault in self._faults:
                if not fault.matches(path):
                    continue
                if fault.after > 0:
                    fault.after -= 1
                elif chosen is None:
                    chosen = fault
                    fault.times -= 1
            self._faults = [fault for fault in self._faults if fault.times > 0]
        return chosen

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


class RequestLog:
    """A thread-safe, append-only list of what the stand-in was asked and what it answered."""

    def __init__(self) -> None:
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)

    def snapshot(self) -> list[dict[str, Any]]:
        """A copy, so that a test can iterate while the server keeps appending."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, lets the server answer it, writes the answer; keeps the connection."""

    # HTTP/1.1 keeps connections alive, so a requests.Session reuses them as it
    # would against the real API; every answer therefore carries Content-Length.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, the body
    # waits for the client's delayed ACK of the headers (40 ms a request).
    disable_nagle_algorithm = True
    server: StandInServer

    def _serve(self) -> None:
        received = time.time()
        try:
            request = Request(self.command, self.path, self.headers, self._read_body())
        except HttpError as exc:
            self.close_connection = True
            self._send(self.server.error_response(exc.status, exc.message))
            return
        if request.path.startswith(CONTROL_PREFIX):
            self._send(self.server.answer(request, self.server.handle_control))
            return

        self.server.arrived()
        fault = self.server.faults.take(request.path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.reset:
            self.server.record(request, None, fault, received)
            self._reset()
            return
        if fault is not None and fault.status is not None:
            response = self.server.fault_response(fault)
        else:
            response = self.server.answer(request, self.server.handle_api)
        if fault is not None and fault.truncate:
            # Half of the real answer, with a matching Content-Length: the client
            # reads a complete HTTP response whose JSON is cut off.
            response = Response(response.status, response.body[: len(response.body) // 2],
                                response.headers, response.log, response.content_type)
        # Logged before the answer goes out, so a client that has its answer can
        # rely on finding the request in the log.
        self.server.record(request, response, fault, received)
        self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise HttpError(400, "Content-Length is not a number") from None
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size_line = self.rfile.readline(65537).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise HttpError(400, "Malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers, unused
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(3)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def _reset(self) -> None:
        """Drop the connection with a TCP reset: the client gets no answer at all."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the server logs what matters (``StandInServer.note``)."""


class StandInServer(ThreadingHTTPServer):
    """A stand-in API on 127.0.0.1, serving from daemon threads in the background.

    Subclasses implement ``handle_api`` and may extend ``handle_control``,
    ``describe`` and ``error_payload``. Use as a context manager, or call
    ``start`` and ``stop``.
    """

    daemon_threads = True
    request_queue_size = 128
    name = "stand-in"
    # Response headers that carry a fault's retry_after (Segment also sends X-RateLimit-Reset).
    retry_headers: tuple[str, ...] = ("Retry-After",)

    def __init__(self, port: int = 0, *, verbose: bool = False) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.verbose = verbose
        self.faults = FaultQueue()
        self.log = RequestLog()
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._arrivals = 0
        self._arrival = threading.Condition()

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash, no API prefix)."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        """Serve in a background daemon thread; returns at once, already listening."""
        if self._thread is None:
            # A short poll keeps stop() quick: shutdown waits for the loop's next poll.
            self._thread = threading.Thread(target=self.serve_forever, args=(0.05,),
                                            name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections, so pooled clients see it down."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        with self._connections_lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a timeout, a reset) is normal here; anything else is shown."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            traceback.print_exc(file=sys.stderr)

    # ------------------------------------------------------------ faults and log

    def inject(self, status: int | None = None, *, times: int = 1,
               retry_after: float | int | str | None = None, delay: float | None = None,
               path_contains: str | None = None, body: bytes | str | dict | list | None = None,
               truncate: bool = False, reset: bool = False, after: int = 0) -> Fault:
        """Misbehave on the next ``times`` API requests whose path contains ``path_contains``.

        The first ``after`` matching requests are answered normally. Then each
        of the next ``times`` is answered with ``status`` (and ``body``, or an
        error body of this API; ``retry_after`` adds a Retry-After header), or
        after sleeping ``delay`` seconds, or with its real answer cut in half
        (``truncate``: invalid JSON), or not at all (``reset``: the connection
        is dropped). ``delay`` combines with the others.
        """
        return self.faults.add(Fault(status, times, retry_after, delay, path_contains,
                                     _body_bytes(body), truncate, reset, after))

    def arrived(self) -> None:
        """Count one API request whose body has been read, before any fault or answer."""
        with self._arrival:
            self._arrivals += 1
            self._arrival.notify_all()

    def wait_for_arrivals(self, count: int, timeout: float = 30) -> None:
        """Block until ``count`` API requests have arrived in all (the request log has a
        request only once it is answered, so a delayed request is in flight but not logged)."""
        with self._arrival:
            if not self._arrival.wait_for(lambda: self._arrivals >= count, timeout):
                raise TimeoutError(f"{self.name}: {self._arrivals} requests arrived in "
                                   f"{timeout} s, not {count}")

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first (control requests under ``/_sandbox/`` excluded)."""
        return self.log.snapshot()

    def clear_log(self) -> None:
        self.log.clear()

    def record(self, request: Request, response: Response | None, fault: Fault | None,
               received: float) -> None:
        status = response.status if response is not None else None
        entry = {"method": request.method, "path": request.path, "query": request.query,
                 **self.describe(request), **(response.log if response is not None else {}),
                 "status": status, "fault": fault.kind if fault is not None else None,
                 "at": received}
        self.log.append(entry)
        if fault is not None or status is None or status >= 400:
            self.note(f"{request.method} {request.path} -> {status}"
                      + (f" (injected {fault.kind})" if fault is not None else ""))

    def note(self, message: str) -> None:
        """One line on stderr, only when verbose (the CLIs): the log is sparse on purpose."""
        if self.verbose:
            print(f"{self.name}: {message}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------ answering

    def answer(self, request: Request, handler: Callable[[Request], Response]) -> Response:
        """Run a handler, turning ``HttpError`` and crashes into this API's error answers."""
        try:
            return handler(request)
        except HttpError as exc:
            return self.error_response(exc.status, exc.message)
        except Exception as exc:  # a stand-in must answer, whatever the data or the bug
            traceback.print_exc(file=sys.stderr)
            return self.error_response(500, f"Stand-in failed: {type(exc).__name__}: {exc}")

    def error_response(self, status: int, message: str) -> Response:
        return json_response(self.error_payload(status, message), status)

    def fault_response(self, fault: Fault) -> Response:
        status = fault.status or 500
        body = fault.body
        if body is None:
            body = orjson.dumps(self.error_payload(status, f"Injected fault: HTTP {status}"))
        headers = ({name: str(fault.retry_after) for name in self.retry_headers}
                   if fault.retry_after is not None else {})
        return Response(status, body, headers)

    def error_payload(self, status: int, message: str) -> dict[str, Any]:
        """The JSON body of an error answer, in this API's shape."""
        return {"message": message}

    def describe(self, request: Request) -> dict[str, Any]:
        """Fields of the request's log entry that come from the request alone."""
        return {}

    def handle_api(self, request: Request) -> Response:
        raise NotImplementedError

    def handle_control(self, request: Request) -> Response:
        """The ``/_sandbox/`` routes shared by both stand-ins; subclasses add their own."""
        route = (request.method, request.segments[1:])
        if route == ("GET", ("requests",)):
            return json_response(self.requests)
        if route == ("POST", ("faults",)):
            options = request.json
            if not isinstance(options, dict):
                raise HttpError(400, "POST /_sandbox/faults takes a JSON object of inject options")
            try:
                fault = self.inject(**options)
            except (TypeError, ValueError) as exc:
                raise HttpError(400, f"Bad fault: {exc}") from None
            return json_response(fault.describe())
        if route == ("GET", ("faults",)):
            return json_response([fault.describe() for fault in self.faults.pending()])
        if route == ("POST", ("faults", "clear")):
            self.clear_faults()
            return json_response({"cleared": True})
        if route == ("POST", ("reset-log",)):
            self.clear_log()
            return json_response({"cleared": True})
        raise HttpError(404, f"No control route {request.method} {request.path}")


def serve_until_signalled(server: StandInServer) -> None:
    """Run a stand-in for a CLI: announce ``READY <url>`` on stdout, stop on SIGTERM or SIGINT."""
    stopping = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server.start()
    print(f"READY {server.url}", flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
        server.note("stopped")
