"""Streaming download of prediction outputs (``data:`` URIs and http(s) URLs) for the storage step.

Outputs are URLs chosen by a remote party, so fetching them is an SSRF risk. Every hop (redirects are
followed by hand, at most 5) must be on ``allowed_hosts``. Entries are origins: ``host:port`` allows
that port only, a bare ``host`` (or ``*.domain``) only the scheme's default port (443/80), so
``127.0.0.1:5001`` never opens Redis on ``127.0.0.1:6379``. Unless ``allow_private`` is set, every
address a host resolves to must be public (``_is_public``: ``is_global`` plus the classes it misses,
and v4 addresses embedded in v6 ones). The one exception is an IP literal entry written with the
URL's exact host: the operator named that address itself. A listed *name* is still checked, as
whoever controls its DNS can point it anywhere. Refusals happen before any connection is made.

DNS rebinding: the host is resolved once, here; the checked address is then pinned for the connect
(``worker.transport.pinned``; the transport from ``make_transport()``, which the worker uses,
connects to that address instead of resolving again, while the URL, ``Host`` header, TLS SNI and
certificate check keep the host name). A client built on another transport gets no pin.

Decoding: outputs are requested with ``Accept-Encoding: identity`` and never decoded; an answer with a
``Content-Encoding`` anyway is refused undecoded, as a few hundred gzip bytes (stacked ``gzip, gzip``)
can inflate to gigabytes in one chunk, long before a count of decoded bytes could stop it. Outputs are
images, already compressed, so nothing is lost.

``auth_header`` is the full ``Authorization`` value; it is sent only to the origin of the first URL,
never to a redirect target on another origin. Any ``Authorization`` default of the injected client is
removed from every request, so never leak the API token to output hosts.
"""

from __future__ import annotations

import base64
import binascii
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

import httpx

from genqueue.worker.egress import DEFAULT_PORTS as _DEFAULT_PORTS
from genqueue.worker.egress import host_allowed
from genqueue.worker.egress import ip_of as _ip
from genqueue.worker.egress import is_public as _is_public
from genqueue.worker.sniff import choose_type, sniff_content_type
from genqueue.worker.transport import pinned

__all__ = ["OutputError", "OutputExpired", "OutputRefused", "OutputSource", "OutputTransient", "host_allowed",
           "open_output", "sniff_content_type"]

MAX_REDIRECTS = 5
CHUNK_SIZE = 64 * 1024
_SNIFF_BYTES = 512
_REDIRECTS = {301, 302, 303, 307, 308}
_IDENTITY = {"", "identity"}


class OutputError(Exception):
    """Base class; ``code`` is a stable machine-readable reason. Messages hold no secrets or queries."""

    retryable = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class OutputRefused(OutputError):
    """Not fetched or not accepted: ``output_host_refused``, ``output_too_large``,
    ``output_fetch_failed`` (other 4xx, bad redirect, malformed ``data:`` URI)."""


class OutputExpired(OutputError):
    """The file is gone (404/403/410): Replicate deletes outputs after an hour. Do not retry."""


class OutputTransient(OutputError):
    """5xx, 429, DNS, connect or read failure: worth retrying."""

    retryable = True


@dataclass
class OutputSource:
    content_type: str
    chunks: Iterator[bytes]
    _closer: Callable[[], None] | None = field(default=None, repr=False)

    def close(self) -> None:
        if self._closer is not None:
            closer, self._closer = self._closer, None
            closer()


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise OutputTransient("output_transient", f"cannot resolve output host {host}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))  # resolver order, no repeats
    if not addresses:
        raise OutputTransient("output_transient", f"cannot resolve output host {host}")
    return addresses


def _wire_host(url: httpx.URL) -> str:
    return url.raw_host.decode("ascii")


def _port(url: httpx.URL) -> int:
    return url.port or _DEFAULT_PORTS[url.scheme]


def _check_url(url: httpx.URL, allowed_hosts: list[str], allow_private: bool) -> str:
    """Refuse ``url`` unless allowed; return the checked address to connect to."""
    if url.scheme not in _DEFAULT_PORTS or not url.host:
        raise OutputRefused("output_host_refused", f"unsupported output URL scheme {url.scheme!r}")
    port = _port(url)
    allowed, exact = host_allowed(url.host, allowed_hosts, port, url.scheme)
    if not allowed:
        raise OutputRefused("output_host_refused", f"output host {url.host}:{port} is not allowed")
    # The name on the wire (IDNA as httpx encodes it), which is also what the pin is matched against.
    addresses = _resolve(_wire_host(url), port)
    named_address = exact and _ip(url.host) is not None  # the operator listed this very address
    if not (allow_private or named_address) and not all(_is_public(a) for a in addresses):
        raise OutputRefused("output_host_refused", f"output host {url.host} resolves to a non-public address")
    return addresses[0]


def _safe(url: httpx.URL) -> str:
    """URL for messages: scheme, host and path only (query strings may carry signatures)."""
    return f"{url.scheme}://{url.host}{url.path}"


def _decode_data_uri(ref: str, max_bytes: int) -> OutputSource:
    header, sep, payload = ref[5:].partition(",")
    if not sep:
        raise OutputRefused("output_fetch_failed", "malformed data: URI")
    params = [p.strip() for p in header.split(";")]
    is_b64 = any(p.lower() == "base64" for p in params[1:])
    declared = params[0] if params[0] else "text/plain"
    if len(payload) > max_bytes * 4 // 3 + 16 and (is_b64 or len(payload) > 3 * max_bytes):
        raise OutputRefused("output_too_large", "data: URI exceeds the size limit")
    raw = unquote_to_bytes(payload)
    if is_b64:
        try:
            raw = base64.b64decode(b"".join(raw.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise OutputRefused("output_fetch_failed", "malformed base64 in data: URI") from exc
    if len(raw) > max_bytes:
        raise OutputRefused("output_too_large", "data: URI exceeds the size limit")
    return OutputSource(content_type=choose_type(declared, raw[:_SNIFF_BYTES]), chunks=iter([raw]))


def _status_error(response: httpx.Response, url: httpx.URL) -> OutputError:
    status = response.status_code
    where = _safe(url)
    if status in (403, 404, 410):
        return OutputExpired("output_expired", f"output {where} is gone (HTTP {status})")
    if status >= 500 or status == 429:
        return OutputTransient("output_transient", f"output {where} answered HTTP {status}")
    return OutputRefused("output_fetch_failed", f"output {where} answered HTTP {status}")


def _transport_failure(exc: httpx.TransportError, url: httpx.URL) -> OutputTransient:
    return OutputTransient("output_transient", f"{type(exc).__name__} fetching output {_safe(url)}")


def _send(http: httpx.Client, url: httpx.URL, address: str, auth: str | None, timeout: float) -> httpx.Response:
    request = http.build_request("GET", url, timeout=httpx.Timeout(timeout))
    request.headers.pop("Authorization", None)
    request.headers.pop("Cookie", None)
    request.headers["Accept-Encoding"] = "identity"  # see the module docstring: no decoding, no bombs
    if auth is not None:
        request.headers["Authorization"] = auth
    try:
        with pinned(_wire_host(url), _port(url), address):  # the connect happens inside send
            return http.send(request, stream=True, follow_redirects=False)
    except httpx.TransportError as exc:
        raise _transport_failure(exc, url) from exc


def _open_http(
    ref: str,
    http: httpx.Client,
    allowed_hosts: list[str],
    allow_private: bool,
    timeout: float,
    auth_header: str | None,
) -> tuple[httpx.Response, httpx.URL]:
    try:
        url = httpx.URL(ref)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise OutputRefused("output_fetch_failed", "malformed output URL") from exc
    first_origin = (url.scheme, url.host, url.port)
    for _hop in range(MAX_REDIRECTS + 1):
        address = _check_url(url, allowed_hosts, allow_private)
        same_origin = (url.scheme, url.host, url.port) == first_origin
        response = _send(http, url, address, auth_header if same_origin else None, timeout)
        if response.status_code not in _REDIRECTS:
            return response, url
        location = response.headers.get("location")
        response.close()
        if not location:
            raise OutputRefused("output_fetch_failed", f"redirect without Location from {_safe(url)}")
        try:
            url = url.join(location)
        except (httpx.InvalidURL, ValueError) as exc:
            raise OutputRefused("output_fetch_failed", "malformed redirect Location") from exc
    raise OutputRefused("output_fetch_failed", f"more than {MAX_REDIRECTS} redirects")


def _check_deadline(deadline: float, url: httpx.URL) -> None:
    # httpx's timeout is per read: a host dripping bytes could hold a worker slot indefinitely.
    if time.monotonic() > deadline:
        raise OutputTransient("output_transient", f"download of {_safe(url)} exceeded its time limit")


def _counted(
    response: httpx.Response, url: httpx.URL, head: bytes, rest: Iterator[bytes], max_bytes: int, deadline: float
) -> Iterator[bytes]:
    total = len(head)
    for i in range(0, len(head), CHUNK_SIZE):
        yield head[i : i + CHUNK_SIZE]
    try:
        for chunk in rest:
            _check_deadline(deadline, url)
            total += len(chunk)
            if total > max_bytes:
                raise OutputRefused("output_too_large", f"output {_safe(url)} exceeds {max_bytes} bytes")
            for i in range(0, len(chunk), CHUNK_SIZE):  # bounded pieces downstream, whatever arrived
                yield chunk[i : i + CHUNK_SIZE]
    except httpx.TransportError as exc:
        raise _transport_failure(exc, url) from exc
    finally:
        response.close()


def content_encoding_acceptable(header: str | None) -> bool:
    """Only unencoded bodies: every listed coding must be ``identity`` (the header may be repeated)."""
    return all(part.strip().lower() in _IDENTITY for part in (header or "").split(","))


def _stream_response(response: httpx.Response, url: httpx.URL, max_bytes: int, deadline: float) -> OutputSource:
    if not content_encoding_acceptable(response.headers.get("content-encoding")):
        raise OutputRefused("output_fetch_failed",
                            f"output {_safe(url)} came content-encoded although identity was asked for")
    length = response.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise OutputRefused("output_too_large", f"output {_safe(url)} is larger than {max_bytes} bytes")
    # As received: a fixed size would wait to fill it, past the deadline. With no Content-Encoding
    # (checked above) httpx's decoder is the identity, so these are the bytes on the wire.
    rest = response.iter_bytes()
    head = b""
    try:
        while len(head) < _SNIFF_BYTES:
            chunk = next(rest, None)
            if chunk is None:
                break
            _check_deadline(deadline, url)
            head += chunk
    except httpx.TransportError as exc:
        raise _transport_failure(exc, url) from exc
    if len(head) > max_bytes:
        raise OutputRefused("output_too_large", f"output {_safe(url)} exceeds {max_bytes} bytes")
    content_type = choose_type(response.headers.get("content-type", ""), head[:_SNIFF_BYTES])
    return OutputSource(
        content_type=content_type,
        chunks=_counted(response, url, head, rest, max_bytes, deadline),
        _closer=response.close,
    )


@contextmanager
def open_output(
    ref: str,
    *,
    http: httpx.Client,
    allowed_hosts: list[str],
    allow_private: bool = False,
    max_bytes: int = 50 * 1024 * 1024,
    timeout: float = 60.0,
    auth_header: str | None = None,
) -> Iterator[OutputSource]:
    """Open an output for streaming; the source is closed when the ``with`` block ends.

    Raises OutputRefused / OutputExpired / OutputTransient (also while iterating ``chunks``)."""
    ref = ref.strip()
    if ref[:5].lower() == "data:":
        source = _decode_data_uri(ref, max_bytes)
    else:
        deadline = time.monotonic() + timeout
        response, url = _open_http(ref, http, allowed_hosts, allow_private, timeout, auth_header)
        try:
            if not 200 <= response.status_code < 300:
                raise _status_error(response, url)
            source = _stream_response(response, url, max_bytes, deadline)
        except BaseException:
            response.close()
            raise
    try:
        yield source
    finally:
        source.close()
