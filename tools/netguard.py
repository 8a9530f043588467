"""Egress policy for fetching web pages on the model's behalf (SSRF defence).

The model chooses URLs, and pages can steer it, so every request is treated as hostile:

- only http and https, no credentials in the URL;
- the host is resolved once, every address is checked, and the connection goes to the checked
  address (the URL is rewritten to the IP; `Host` and TLS SNI keep the name), so a DNS answer
  that changes between check and connect cannot redirect us;
- private, loopback, link-local, multicast, reserved, shared and cloud-metadata addresses are
  refused, including IPv4 embedded in IPv6 (mapped, NAT64, 6to4) and the decimal, octal and hex
  spellings libc accepts (they resolve to the same address, which is what gets checked);
- redirects are followed by hand, at most `max_redirects`, each checked again (address, and
  the port when the allow-list names one: `host:port`);
- bodies are capped after decompression, decompressing ourselves in bounded steps so a gzip
  bomb never expands past the cap in memory; one deadline (connect + read timeout) covers the
  whole exchange, headers included, enforced at the socket.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpcore
import httpx

from tools.errors import ToolInputError
from tools.settings import BrowserSettings

__all__ = ["EgressDenied", "FetchError", "FetchResult", "Target", "check_url", "fetch", "is_forbidden_ip", "make_client"]

# Names that reach metadata services without a forbidden-looking address in the URL.
_METADATA_NAMES = {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
# Addresses ipaddress considers global that still reach cloud metadata endpoints.
_METADATA_IPS = {ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("192.0.0.192")}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")

_TEXT_TYPES = ("text/", "application/xhtml", "application/xml", "application/json", "application/ld+json", "application/rss", "application/atom")


class EgressDenied(ToolInputError):
    """The URL or an address it resolves to is not allowed by the egress policy."""


class FetchError(ToolInputError):
    """The page could not be fetched (network error, timeout, too large, not text)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: connect to `ip`, but speak to `host`."""

    url: str
    scheme: str
    host: str
    port: int
    ip: str

    def __str__(self) -> str:
        return self.ip

    def pinned_url(self) -> str:
        parts = urlsplit(self.url)
        ip = f"[{self.ip}]" if ":" in self.ip else self.ip
        return urlunsplit((parts.scheme, f"{ip}:{self.port}", parts.path or "/", parts.query, ""))

    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return ip.teredo[1]
    # IPv4-compatible (deprecated ::a.b.c.d) forms.
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip))
    return None


def is_forbidden_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | str) -> str | None:
    """Why an address may not be contacted, or None when it is a public unicast address."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            reason = is_forbidden_ip(inner)
            return f"{reason} (embedded in {ip})" if reason else None
    if ip in _METADATA_IPS:
        return "a cloud metadata address"
    checks = (
        ("is_loopback", "a loopback address"),
        ("is_unspecified", "an unspecified address"),
        ("is_link_local", "a link-local address (includes cloud metadata 169.254.169.254)"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
        ("is_private", "a private address"),
    )
    for attr, reason in checks:
        if getattr(ip, attr, False):
            return reason
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if not ip.is_global:
        return "a non-public address"
    return None


def _normalize_host(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise EgressDenied(f"host name {host!r} is not a valid international domain name") from None


Resolver = Callable[[str, int], list[str]]


def parse_allow_entry(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address -> (host, port or None)."""
    entry = entry.strip()
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            raise EgressDenied(f"allow-list entry {entry!r} is malformed; use [address] or [address]:port")
        return _normalize_host(inside), int(rest[1:]) if rest else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise EgressDenied(f"allow-list entry {entry!r} has a bad port; use host or host:port")
        return _normalize_host(host), int(port)
    return _normalize_host(entry), None


def host_admitted(host: str, port: int, allow_hosts: list[str] | tuple[str, ...]) -> bool:
    """Whether the allow-list admits `host` on `port`: a bare entry admits every port of the
    host, a `host:port` entry only that port (checked again on every redirect hop)."""
    for entry in allow_hosts:
        name, only = parse_allow_entry(entry)
        if name == host and (only is None or only == port):
            return True
    return False


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def check_url(url: str, allow_hosts: list[str] | tuple[str, ...] = (), *, resolver: Resolver | None = None) -> Target:
    """Check `url` against the egress policy and return the address to connect to.

    Raises EgressDenied with the reason when the URL may not be fetched.
    """
    if not isinstance(url, str) or not url.strip():
        raise EgressDenied("the URL is empty; give a full http:// or https:// address")
    url = url.strip()
    if "\\" in url or any(ord(c) < 33 for c in url):
        raise EgressDenied(f"URL {url[:200]!r} contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EgressDenied(f"URL {url[:200]!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise EgressDenied(f"scheme {scheme or '(none)'!r} is not allowed; only http and https URLs can be opened")
    if parts.username is not None or parts.password is not None:
        raise EgressDenied("URLs with a user name or password are not allowed")
    if not parts.hostname:
        raise EgressDenied(f"URL {url[:200]!r} has no host")
    host = _normalize_host(parts.hostname)
    port = port or (443 if scheme == "https" else 80)
    allowed = host_admitted(host, port, allow_hosts)
    if host in _METADATA_NAMES and not allowed:
        raise EgressDenied(f"host {host!r} is a cloud metadata service")
    try:
        addresses = (resolver or _system_resolver)(host, port)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise EgressDenied(f"host {host!r} could not be resolved: {exc}") from None
    if not addresses:
        raise EgressDenied(f"host {host!r} has no addresses")
    checked: list[str] = []
    for addr in addresses:
        try:
            ip = ipaddress.ip_address(addr.split("%", 1)[0])
        except ValueError:
            raise EgressDenied(f"host {host!r} resolved to something that is not an IP address: {addr!r}") from None
        reason = is_forbidden_ip(ip)
        if reason and not allowed:
            # One bad answer taints the name: a resolver mixing public and private answers is a
            # classic rebinding trick.
            raise EgressDenied(f"host {host!r} resolves to {ip}, {reason}; fetching it is not allowed")
        checked.append(str(ip))
    clean = urlunsplit((scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, parts.query, ""))
    return Target(url=clean, scheme=scheme, host=host, port=port, ip=checked[0])


@dataclass
class FetchResult:
    url: str  # final URL after redirects
    status: int
    content_type: str
    body: bytes
    charset: str | None
    redirects: list[str] = field(default_factory=list)

    def text(self) -> str:
        for enc in (self.charset, "utf-8"):
            if enc:
                try:
                    return self.body.decode(enc)
                except (LookupError, UnicodeDecodeError):
                    continue
        return self.body.decode("utf-8", "replace")


class _Budget:
    """Bounded decompression: output never exceeds the cap, however small the input."""

    def __init__(self, encoding: str, cap: int) -> None:
        self.cap = cap
        self.total = 0
        if encoding in ("", "identity"):
            self._d = None
        elif encoding in ("gzip", "x-gzip"):
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._d = zlib.decompressobj(zlib.MAX_WBITS)
            self._raw_deflate_fallback = True
        else:
            raise FetchError(f"the server used content encoding {encoding!r}, which is not supported")
        self._first = True

    def feed(self, chunk: bytes) -> bytes:
        if self._d is None:
            out = chunk
        else:
            out = self._inflate(chunk)
        self.total += len(out)
        if self.total > self.cap:
            raise FetchError(f"the page is larger than the limit of {self.cap} bytes")
        return out

    def _inflate(self, chunk: bytes) -> bytes:
        pieces = []
        data = chunk
        room = self.cap - self.total + 1
        while data and room > 0:
            try:
                piece = self._d.decompress(data, room)
            except zlib.error:
                if self._first and getattr(self, "_raw_deflate_fallback", False):
                    # Some servers send raw deflate without the zlib header.
                    self._d = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._first = False
                    continue
                raise FetchError("the compressed response is corrupt") from None
            self._first = False
            pieces.append(piece)
            room -= len(piece)
            data = self._d.unconsumed_tail
            if self._d.eof:
                break
        return b"".join(pieces)


_EXCHANGE = threading.local()  # .deadline: time.monotonic() by which the current fetch must end


def _clip(timeout: float | None) -> float:
    """A socket operation's timeout, cut to what is left of the exchange's deadline."""
    deadline = getattr(_EXCHANGE, "deadline", None)
    if deadline is None:
        return timeout  # type: ignore[return-value]
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the exchange's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write stops at the exchange's deadline, so a server
    that sends its headers (or body) a byte at a time cannot stretch a fetch."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clip(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clip(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _clip(timeout)))

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.SyncBackend):
    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return _DeadlineStream(super().connect_tcp(host, port, _clip(timeout), local_address, socket_options))


def make_client(settings: BrowserSettings) -> httpx.Client:
    """An HTTP client for `fetch`; reusing one saves building a TLS context per page (~20 ms)."""
    # No keep-alive: connections are keyed by the pinned IP, so a kept TLS connection made for
    # one host name could otherwise carry a request for another name on the same IP.
    transport = httpx.HTTPTransport(trust_env=False, limits=httpx.Limits(max_keepalive_connections=0))
    # httpx has no total timeout, only per-operation ones; the deadline lives in the socket
    # layer, which httpx 0.28 reaches only through its pool's backend (pinned in pyproject).
    pool = getattr(transport, "_pool", None)
    if not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx version hides its connection pool; evolve pins httpx<0.29")
    pool._network_backend = _DeadlineBackend()
    return httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.read_timeout_s,
            pool=settings.connect_timeout_s,
        ),
        follow_redirects=False,
        trust_env=False,  # a proxy from the environment would bypass the address pinning
    )


def fetch(
    url: str,
    settings: BrowserSettings,
    *,
    resolver: Resolver | None = None,
    clock: Callable[[], float] = time.monotonic,
    client: httpx.Client | None = None,
) -> FetchResult:
    """GET `url` under the egress policy, following checked redirects; returns the body."""
    own_client = client is None
    if client is None:
        client = make_client(settings)
    total = settings.connect_timeout_s + settings.read_timeout_s
    deadline = clock() + total
    # One deadline for the whole exchange, redirects, headers and body included.
    _EXCHANGE.deadline = time.monotonic() + total
    redirects: list[str] = []
    try:
        current = url
        for _ in range(settings.max_redirects + 1):
            target = check_url(current, settings.allow_hosts, resolver=resolver)
            status, headers, body = _get(client, target, settings, deadline, clock)
            if status in (301, 302, 303, 307, 308) and "location" in headers:
                nxt = urljoin(target.url, headers["location"])
                redirects.append(nxt)
                current = nxt
                continue
            ctype = headers.get("content-type", "")
            charset = None
            if "charset=" in ctype.lower():
                charset = ctype.lower().split("charset=", 1)[1].split(";")[0].strip().strip('"') or None
            return FetchResult(url=target.url, status=status, content_type=ctype.split(";")[0].strip().lower(), body=body, charset=charset, redirects=redirects)
        raise EgressDenied(f"too many redirects (more than {settings.max_redirects}) starting at {url}")
    finally:
        _EXCHANGE.deadline = None
        if own_client:
            client.close()


def _get(client: httpx.Client, target: Target, settings: BrowserSettings, deadline: float, clock) -> tuple[int, httpx.Headers, bytes]:
    headers = {
        "Host": target.host_header(),
        "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5",
        "Accept-Encoding": "gzip, deflate",
        "User-Agent": "evolve-agent/0.1 (+text browser)",
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    request = client.build_request("GET", target.pinned_url(), headers=headers, extensions=extensions)
    limit = settings.connect_timeout_s + settings.read_timeout_s
    try:
        response = client.send(request, stream=True)
    except httpx.TimeoutException:
        if time.monotonic() >= (getattr(_EXCHANGE, "deadline", None) or float("inf")):
            raise FetchError(f"{target.url} took too long to answer (limit {limit:g} s for the whole exchange)") from None
        raise FetchError(f"timed out connecting to {target.host}") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"could not fetch {target.url}: {exc}") from None
    try:
        if response.status_code in (301, 302, 303, 307, 308):
            return response.status_code, response.headers, b""
        ctype = response.headers.get("content-type", "text/html").lower()
        if not ctype.startswith(_TEXT_TYPES):
            raise FetchError(f"{target.url} is not a text page (content type {ctype.split(';')[0]!r})")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_bytes:
            raise FetchError(f"the page is {declared} bytes, more than the limit of {settings.max_bytes}")
        encoding = response.headers.get("content-encoding", "").strip().lower()
        budget = _Budget(encoding, settings.max_bytes)
        raw_total = 0
        chunks = []
        try:
            for raw in response.iter_raw():
                raw_total += len(raw)
                if raw_total > settings.max_bytes:
                    raise FetchError(f"the page is larger than the limit of {settings.max_bytes} bytes")
                chunks.append(budget.feed(raw))
                if clock() > deadline:
                    raise FetchError(f"{target.url} took too long to send (limit {settings.connect_timeout_s + settings.read_timeout_s:g} s)")
        except httpx.TimeoutException:
            raise FetchError(f"timed out reading {target.url}: it took too long to send (limit {limit:g} s)") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"error reading {target.url}: {exc}") from None
        if response.status_code >= 400:
            raise FetchError(f"{target.url} answered HTTP {response.status_code}")
        return response.status_code, response.headers, b"".join(chunks)
    finally:
        response.close()
