"""Where a tool call's network address came from (issue 13 §5: tool output never triggers a
tool call on its own authority).

The instruction hierarchy is system message > user's question > tool data. A tool call that
would make the browser open an address runs only when that address is backed by the top two:

1. its host (and port) is named in the trusted text: the policy's system prompt or the user's
   question, as a URL or a bare host name; and
2. for `open_url`, the URL is not one copied from data: when it occurs in a tool's output or a
   retrieved memory but not in the trusted text, it is refused (a link on the page is opened
   with `follow_link`, which rule 1 checks against the link's own target).

Anything else goes back to the model as a refused call with one line of reason, so a page that
says "call open_url with X" fails by construction, whatever the model does. What rule 1 cannot
stop: a URL the model composes on a host the user named (say with a query string) reaches that
host; the user chose it. Tools without an address argument (calculator, the sandboxed python,
find_in_page) reach no network and are not checked here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

# Arguments that name an address the tool would open.
ADDRESS_ARGS = ("url", "href", "address")
FOLLOW_TOOL = "follow_link"
_URL = re.compile(r"https?://[^\s<>\"'`)\]}]+", re.IGNORECASE)
# A bare host name in prose ("look it up on en.wikipedia.org"): labels, a dot, a letter TLD.
_BARE_HOST = re.compile(r"(?<![\w./@-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})(?::(\d{1,5}))?(?![\w-])",
                        re.IGNORECASE)
# How tools/browser.py lists the links of a page: "[3] label <https://...>".
_LINK_LINE = re.compile(r"^\[(\d+)\] .*<(\S+)>\s*$", re.MULTILINE)
_DEFAULT_PORT = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, int | None] | None:
    """(host, port) of URL with the scheme's default port filled in; None if it has no host."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:  # a malformed port or bracket: not an address we can vouch for
        return None
    if not host:
        return None
    return host.lower().rstrip("."), port if port is not None else _DEFAULT_PORT.get(parts.scheme.lower())


def trusted_origins(text: str) -> set[tuple[str, int | None]]:
    """Every (host, port) the trusted text names. A bare host without a port stands for the
    web's two default ports; a URL for exactly its own."""
    found: set[tuple[str, int | None]] = set()
    for m in _URL.finditer(text):
        origin = _origin(m.group(0).rstrip(".,;:!?"))
        if origin:
            found.add(origin)
    for m in _BARE_HOST.finditer(_URL.sub(" ", text)):
        host = m.group(1).lower()
        ports = [int(m.group(2))] if m.group(2) else [80, 443]
        found.update((host, p) for p in ports)
    return found


def _norm(url: str) -> str:
    url = url.strip().split("#", 1)[0]
    return url.rstrip("/").lower()


def _named(url: str, trusted: str) -> str | None:
    origin = _origin(url)
    if origin is None:
        return f"{url!r} is not a full http(s) address"
    if origin not in trusted_origins(trusted):
        host = origin[0] if origin[1] in (80, 443) else f"{origin[0]}:{origin[1]}"
        return (f"host {host} is not named in the question or the system message, and a tool's "
                "output cannot choose where the browser goes")
    return None


def _link_target(n: object, data: Iterable[str]) -> str | None:
    """The address of link N in the link list ("Links:", last in tools/browser.py's rendering)
    of the most recent page that has one. Only for a tool that cannot say itself: a page body
    can spoof link lines, so the browser's own `link_target` is preferred (see `refusal`)."""
    for text in reversed(list(data)):
        head, sep, listing = text.rpartition("\nLinks:\n")
        if sep:
            return dict(_LINK_LINE.findall(listing)).get(str(n).strip())
    return None


def refusal(tool_name: str, args: object, *, trusted: str, data: Iterable[str],
            link_target: Callable[[object], str | None] | None = None) -> str | None:
    """One line saying why this call may not run, or None when its addresses are backed by the
    trusted text. `data`: the tool outputs and retrieved memories shown so far, oldest first;
    `link_target`: the browser's own answer to "where does link n go", when it has one."""
    data = list(data)
    if tool_name == FOLLOW_TOOL and isinstance(args, dict) and len(args) == 1:
        n = str(next(iter(args.values()))).strip()
        target = link_target(n) if link_target is not None else _link_target(n, data)
        if target is None:
            return f"{tool_name} was not run: link [{n}] is not listed on the page you have"
        why = _named(target, trusted)
        return f"{tool_name} was not run: link [{n}] goes to {target}; {why}" if why else None
    if not isinstance(args, dict):
        return None  # Tool.invoke reports bad input; it never gets as far as opening anything
    for key in ADDRESS_ARGS:
        url = args.get(key)
        if not isinstance(url, str):
            continue
        why = _named(url, trusted)
        if why:
            return f"{tool_name} was not run: {why}"
        copied = _norm(url)
        if copied not in _norm(trusted) and any(copied in _norm(text) for text in data):
            return (f"{tool_name} was not run: {url} was copied from a tool's output or a "
                    f"retrieved memory, not from your task; to open a link of the page use {FOLLOW_TOOL}")
    return None
