"""A text browser for the agent: open a URL, search the page, follow a numbered link.

Pages come through `tools.netguard` (egress policy, pinned addresses, size and time caps). Before
extraction, everything a human reader would not see is removed (scripts, styles, templates,
`hidden`/`aria-hidden` elements, `display:none`, `visibility:hidden`, zero-size text): hidden
text is the usual carrier of prompt injection. What remains is still untrusted, so every result
has `untrusted=True` and the prompt builder fences it as data.

Extraction uses trafilatura (main content, markdown-ish); when it finds nothing, html2text and
then BeautifulSoup's plain text take over. Links are numbered from the whole page, so navigation
links the main-content extractor dropped can still be followed.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urljoin, urlsplit

import httpx
from bs4 import BeautifulSoup, Comment

from tools.settings import BrowserSettings
from tools.base import ToolResult
from tools.bounded import BoundedError, run_bounded
from tools.netguard import EgressDenied, FetchError, FetchResult, Resolver, fetch, make_client

__all__ = ["Browser", "Page", "extract_page"]

_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d]*[1-9])|opacity\s*:\s*0(?![.\d]*[1-9])"
    r"|(?:^|;)\s*(?:max-)?height\s*:\s*0(?:px)?\s*(?:;|$)|clip\s*:\s*rect\(\s*0",
    re.IGNORECASE,
)
_INVISIBLE_TAGS = ("script", "style", "template", "noscript", "iframe", "object", "embed", "svg", "canvas", "head")
_MD_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_MAX_LINKS = 200


@dataclass
class Page:
    url: str
    title: str
    text: str  # the full extracted text with [n] link markers
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, absolute url)


def _strip_hidden(soup: BeautifulSoup) -> None:
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    for tag in soup.find_all(_INVISIBLE_TAGS):
        tag.decompose()
    doomed = []
    for tag in soup.find_all(True):
        attrs = tag.attrs or {}
        if (
            "hidden" in attrs
            or str(attrs.get("aria-hidden", "")).lower() == "true"
            or (tag.name == "input" and str(attrs.get("type", "")).lower() == "hidden")
            or _HIDDEN_STYLE.search(str(attrs.get("style", "")))
        ):
            doomed.append(tag)
    for tag in doomed:
        # A hidden element inside another hidden one may already be gone with its parent.
        if not getattr(tag, "decomposed", False):
            tag.decompose()


def _collect_links(soup: BeautifulSoup, base: str) -> list[tuple[str, str]]:
    links: list[tuple[str, str]] = []
    seen: set[str] = set()
    for a in soup.find_all("a", href=True):
        href = urljoin(base, a["href"].strip())
        if urlsplit(href).scheme not in ("http", "https"):
            continue
        href = href.split("#", 1)[0] or href
        if href in seen:
            continue
        seen.add(href)
        label = " ".join(a.get_text(" ", strip=True).split())[:80] or href
        links.append((label, href))
        if len(links) >= _MAX_LINKS:
            break
    return links


def _number_links(markdown: str, base: str, links: list[tuple[str, str]]) -> str:
    """Replace markdown links with `label [n]`, n pointing into the page's link list."""
    index = {url: i + 1 for i, (_, url) in enumerate(links)}

    def repl(m: re.Match) -> str:
        image, label, href = m.group(1), m.group(2).strip(), m.group(3)
        if image:
            return f"[image: {label}]" if label else ""
        absolute = urljoin(base, href).split("#", 1)[0]
        n = index.get(absolute)
        if n is None:
            return label
        return f"{label} [{n}]" if label else f"[{n}]"

    return _MD_LINK.sub(repl, markdown)


def _extract_main(html: str, url: str) -> str:
    try:
        import trafilatura  # imported here: it pulls in lxml_html_clean and takes ~0.3 s to load

        text = trafilatura.extract(
            html,
            url=url,
            output_format="markdown",
            include_links=True,
            include_tables=True,
            include_comments=False,
            favor_recall=True,
            with_metadata=False,
        )
    except Exception:
        text = None
    if text and text.strip():
        return text.strip()
    try:
        import html2text

        conv = html2text.HTML2Text(baseurl=url)
        conv.body_width = 0
        conv.ignore_images = True
        text = conv.handle(html)
    except Exception:
        text = None
    if text and text.strip():
        return text.strip()
    return BeautifulSoup(html, "html.parser").get_text("\n", strip=True)


def extract_page(html: str, url: str) -> Page:
    """Readable text and numbered links from HTML, with hidden content removed first."""
    soup = BeautifulSoup(html, "lxml")
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text(" ", strip=True).split()) if title_tag else ""
    base_tag = soup.find("base", href=True)
    base = urljoin(url, base_tag["href"]) if base_tag else url
    _strip_hidden(soup)
    links = _collect_links(soup, base)
    text = _number_links(_extract_main(str(soup), base), base, links)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return Page(url=url, title=title, text=text, links=links)


def _cap_tags(html: str, max_tags: int) -> tuple[str, bool]:
    """The HTML up to its `max_tags`-th tag, and whether anything was cut."""
    pos = -1
    for _ in range(max_tags + 1):
        pos = html.find("<", pos + 1)
        if pos < 0:
            return html, False
    return html[:pos], True


def _extract_data(html: str, url: str) -> dict:
    page = extract_page(html, url)
    return {"url": page.url, "title": page.title, "text": page.text, "links": page.links}


def _preload_extractors() -> None:
    for name in ("trafilatura", "html2text"):
        try:
            __import__(name)
        except Exception:
            pass


class Browser:
    """One browsing session: the open page and its links persist between calls."""

    def __init__(
        self,
        settings: BrowserSettings | None = None,
        *,
        resolver: Resolver | None = None,
        fetcher: Callable[[str], FetchResult] | None = None,
    ) -> None:
        self.settings = settings or BrowserSettings()
        self._resolver = resolver
        self._fetcher = fetcher
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self.page: Page | None = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- fetching --------------------------------------------------------------------------------

    def _fetch(self, url: str) -> FetchResult:
        if self._fetcher is not None:
            return self._fetcher(url)
        with self._client_lock:
            if self._client is None:
                self._client = make_client(self.settings)
        return fetch(url, self.settings, resolver=self._resolver, client=self._client)

    def _render_js(self, url: str) -> tuple[str, str]:
        """Render with Chromium; every request the page makes is fetched by us, under the policy."""
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise FetchError(
                "JavaScript rendering is on but Playwright is not installed: pip install playwright, "
                "apt-get install chromium, or set EVOLVE_BROWSER__JAVASCRIPT=false"
            ) from None

        def route(route_obj) -> None:
            request = route_obj.request
            if request.method != "GET":
                route_obj.abort()
                return
            try:
                res = self._fetch(request.url)
            except (EgressDenied, FetchError):
                route_obj.abort()
                return
            route_obj.fulfill(status=res.status, body=res.body, content_type=res.content_type or "text/html")

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=self.settings.chromium_path, headless=True)
            try:
                context = browser.new_context(java_script_enabled=True, service_workers="block")
                context.route("**/*", route)
                page = context.new_page()
                timeout_ms = (self.settings.connect_timeout_s + self.settings.read_timeout_s) * 1000
                page.goto(url, timeout=timeout_ms, wait_until="networkidle")
                return page.url, page.content()
            finally:
                browser.close()

    def _load(self, url: str) -> Page:
        result = self._fetch(url)
        if self.settings.javascript and result.content_type in ("text/html", "application/xhtml+xml"):
            final_url, html = self._render_js(result.url)
            return self._extract(html, final_url)
        text = result.text()
        if result.content_type in ("text/html", "application/xhtml+xml") or "<html" in text[:1000].lower():
            return self._extract(text, result.url)
        return Page(url=result.url, title="", text=text.strip(), links=[])

    def _extract(self, html: str, url: str) -> Page:
        """`extract_page` bounded in size (tags), time and memory: see tools/bounded.py."""
        st = self.settings
        html, cut = _cap_tags(html, st.max_tags)
        _preload_extractors()  # imported before the fork, not in the child
        try:
            data = run_bounded(_extract_data, html, url, timeout_s=st.extract_timeout_s, memory_mb=st.extract_memory_mb)
        except BoundedError as exc:
            raise FetchError(
                f"the page could not be read: extraction {exc} (limits: {st.extract_timeout_s:g} s, "
                f"{st.extract_memory_mb} MB)"
            ) from None
        page = Page(url=data["url"], title=data["title"], text=data["text"],
                    links=[(label, href) for label, href in data["links"]])
        if cut:
            page.text += f"\n\n[... the page was cut after its first {st.max_tags} tags ...]"
        return page

    # -- rendering -------------------------------------------------------------------------------

    def _render(self, page: Page) -> ToolResult:
        limit = self.settings.max_page_chars
        head = f"URL: {page.url}\n" + (f"Title: {page.title}\n" if page.title else "") + "\n"
        body = page.text
        if len(body) > limit:
            cut = len(body) - limit
            body = body[:limit] + f"\n[... page truncated, {cut} more characters: use find_in_page to search it ...]"
        link_lines = []
        used = len(head) + len(body)
        for i, (label, href) in enumerate(page.links, 1):
            line = f"[{i}] {label} <{href}>"
            if used + len(line) > limit * 1.5:
                link_lines.append(f"... {len(page.links) - i + 1} more links")
                break
            link_lines.append(line)
            used += len(line) + 1
        links = ("\n\nLinks:\n" + "\n".join(link_lines)) if link_lines else ""
        return ToolResult(
            ok=True,
            content=head + body + links,
            untrusted=True,
            data={"url": page.url, "title": page.title, "links": len(page.links), "chars": len(page.text)},
        )

    # -- the three actions -----------------------------------------------------------------------

    def open(self, url: str) -> ToolResult:
        """Open a web page and return its readable text with numbered links.

        Args:
            url: The full address to open, starting with http:// or https://.
        """
        try:
            page = self._load(url)
        except (EgressDenied, FetchError) as exc:
            return ToolResult(ok=False, content=f"could not open {url}: {exc}")
        self.page = page
        return self._render(page)

    def find(self, text: str) -> ToolResult:
        """Search the open page for some text and return the matching lines.

        Args:
            text: The words to look for (case-insensitive).
        """
        if self.page is None:
            return ToolResult(ok=False, content="no page is open; call open_url with a URL first")
        needle = text.strip().lower()
        if not needle:
            return ToolResult(ok=False, content="give some text to search for")
        lines = self.page.text.splitlines()
        hits = [i for i, line in enumerate(lines) if needle in line.lower()]
        if not hits:
            return ToolResult(
                ok=True,
                content=f"{text!r} does not occur on {self.page.url}",
                untrusted=True,
                data={"matches": 0},
            )
        shown = []
        for i in hits[:10]:
            context = " / ".join(s.strip() for s in lines[max(i - 1, 0) : i + 2] if s.strip())
            shown.append(f"line {i + 1}: {context[:400]}")
        more = f"\n({len(hits) - 10} more matches)" if len(hits) > 10 else ""
        return ToolResult(
            ok=True,
            content=f"{len(hits)} match(es) for {text!r} on {self.page.url}:\n" + "\n".join(shown) + more,
            untrusted=True,
            data={"matches": len(hits)},
        )

    def link_target(self, n: object) -> str | None:
        """The address link n of the open page goes to, or None. The agent's provenance check
        (agent/provenance.py) reads it before `follow` runs, from the page, not from its text."""
        try:
            i = int(str(n).strip())
        except ValueError:
            return None
        if self.page is None or not 1 <= i <= len(self.page.links):
            return None
        return self.page.links[i - 1][1]

    def follow(self, n: int) -> ToolResult:
        """Open link number n of the current page.

        Args:
            n: The number shown in brackets next to the link, e.g. 3 for [3].
        """
        if self.page is None:
            return ToolResult(ok=False, content="no page is open; call open_url with a URL first")
        if not 1 <= n <= len(self.page.links):
            return ToolResult(
                ok=False,
                content=f"link [{n}] does not exist; this page has links [1] to [{len(self.page.links)}]"
                if self.page.links
                else "this page has no links to follow",
            )
        return self.open(self.page.links[n - 1][1])
