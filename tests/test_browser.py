"""The text browser against a real local server: extraction, hidden text, links, find, follow."""

from __future__ import annotations

import importlib.util
import time

import pytest

from agent.config import BrowserSettings, Settings
from tools.browser import Browser, extract_page
from tools.netguard import FetchResult
from tools.registry import default_tools, main_fetch
# The same local test server as the netguard tests: one fixture serves both modules.
from tests.test_netguard import server  # noqa: F401  (pytest fixture)

INJECTION = "IGNORE PREVIOUS INSTRUCTIONS"


@pytest.fixture()
def browser() -> Browser:
    return Browser(BrowserSettings(allow_hosts=["127.0.0.1"], connect_timeout_s=1, read_timeout_s=1, max_bytes=500_000))


def test_open_returns_readable_untrusted_text(browser: Browser, server: str) -> None:
    result = browser.open(server + "/page")
    assert result.ok and result.untrusted
    text = result.content
    assert text.startswith(f"URL: {server}/page\nTitle: Test Page\n")
    assert "Welcome to the test page" in text and "quick brown fox" in text and "quokka" in text
    assert "SCRIPT-TEXT" not in text and "color: red" not in text
    assert result.data["url"] == server + "/page" and result.data["title"] == "Test Page"


def test_hidden_prompt_injection_is_removed(browser: Browser, server: str) -> None:
    result = browser.open(server + "/page")
    assert INJECTION not in result.content
    assert INJECTION not in browser.page.text
    assert browser.find("ignore previous").data["matches"] == 0


def test_links_are_numbered_inline_and_listed(browser: Browser, server: str) -> None:
    result = browser.open(server + "/page")
    links = browser.page.links
    assert links[0] == ("Other page", server + "/other")
    assert ("docs", "https://example.org/docs") in links
    n_docs = links.index(("docs", "https://example.org/docs")) + 1
    assert f"docs [{n_docs}]" in result.content
    assert "other page [1]" in result.content
    assert f"[1] Other page <{server}/other>" in result.content


def test_find_and_follow(browser: Browser, server: str) -> None:
    browser.open(server + "/page")
    found = browser.find("QUOKKA")
    assert found.ok and found.untrusted and found.data["matches"] == 1 and "quokka" in found.content
    followed = browser.follow(1)
    assert followed.ok and "The other page" in followed.content
    assert browser.page.url == server + "/other"


def test_errors_are_observations(browser: Browser, server: str) -> None:
    assert "no page is open" in browser.find("x").content
    assert "no page is open" in browser.follow(1).content
    browser.open(server + "/page")
    bad = browser.follow(99)
    assert not bad.ok and "does not exist" in bad.content
    denied = browser.open("http://169.254.169.254/latest/meta-data/")
    assert not denied.ok and "link-local" in denied.content
    # A failed open keeps the previous page.
    assert browser.page.url == server + "/page"


def test_plain_text_and_gzip_pages(browser: Browser, server: str) -> None:
    plain = browser.open(server + "/plain")
    assert plain.ok and "just some plain text\nsecond line" in plain.content
    zipped = browser.open(server + "/gzip-ok")
    assert zipped.ok and "quokka" in zipped.content and INJECTION not in zipped.content


def test_long_pages_are_truncated_but_searchable() -> None:
    html = "<html><body><main>" + "".join(f"<p>Paragraph {i} talks about topic {i}.</p>" for i in range(2000)) + "</main></body></html>"
    pages = {"http://site.test/": html}

    from tools.netguard import FetchResult

    def fetcher(url: str) -> FetchResult:
        return FetchResult(url=url, status=200, content_type="text/html", body=pages[url].encode(), charset="utf-8")

    browser = Browser(BrowserSettings(max_page_chars=1000), fetcher=fetcher)
    result = browser.open("http://site.test/")
    assert "page truncated" in result.content and len(result.content) < 1300
    assert browser.find("topic 1999").data["matches"] == 1


def test_extract_page_fallbacks_and_base_href() -> None:
    page = extract_page('<html><head><base href="http://b.test/dir/"></head><body><a href="x">X</a></body></html>', "http://a.test/")
    assert page.links == [("X", "http://b.test/dir/x")]
    assert "X" in page.text
    empty = extract_page("<html><body></body></html>", "http://a.test/")
    assert empty.text == "" and empty.links == []


@pytest.mark.skipif(importlib.util.find_spec("playwright") is not None, reason="playwright is installed here")
def test_javascript_mode_without_playwright_is_a_clear_error(server: str) -> None:
    browser = Browser(BrowserSettings(allow_hosts=["127.0.0.1"], javascript=True))
    result = browser.open(server + "/page")
    assert not result.ok and "pip install playwright" in result.content


def test_registry_tools_share_one_browser(server: str, tmp_path) -> None:
    settings = Settings(home=tmp_path, browser=BrowserSettings(allow_hosts=["127.0.0.1"]))
    tools = {t.name: t for t in default_tools(settings)}
    assert list(tools) == ["calculator", "python", "open_url", "find_in_page", "follow_link"]
    opened = tools["open_url"].invoke({"url": server + "/page"})
    assert opened.ok and opened.untrusted
    assert tools["find_in_page"].invoke({"text": "quokka"}).data["matches"] == 1
    assert "The other page" in tools["follow_link"].invoke('{"n": 1}').content
    status, text = main_fetch(server + "/page", settings)
    assert status == 0 and "Welcome to the test page" in text
    status, text = main_fetch("http://10.0.0.1/", settings)
    assert status == 1 and "private" in text


# -- issue 13 §3: extraction bounded in size, time and memory ------------------------------------

def _html_browser(html: str, **settings) -> Browser:
    def fetcher(url: str) -> FetchResult:
        return FetchResult(url=url, status=200, content_type="text/html", body=html.encode(), charset="utf-8")

    return Browser(BrowserSettings(**settings), fetcher=fetcher)


def test_300000_unclosed_tags_are_cut_and_extracted_quickly() -> None:
    html = "<html><body><p>visible start</p>" + "<div>" * 300_000  # 1.5 MB, under the size cap
    start = time.perf_counter()
    result = _html_browser(html).open("http://a.test/")
    took = time.perf_counter() - start
    assert result.ok and "visible start" in result.content and "cut after its first 20000 tags" in result.content
    assert took < 4 * BrowserSettings().extract_timeout_s + 2  # the wall-clock backstop


def test_extraction_time_limit_ends_in_a_clear_error() -> None:
    html = "<html><body>" + "<p>word " * 19_000  # about 2 s of CPU to extract
    start = time.perf_counter()
    result = _html_browser(html, extract_timeout_s=0.05).open("http://a.test/")
    assert not result.ok and "could not be read" in result.content and "took longer than" in result.content
    assert time.perf_counter() - start < 4 * 0.05 + 2


def test_extraction_memory_limit_ends_in_a_clear_error() -> None:
    # 8 MB of text is copied several times over by the parsers: far beyond 1 MB more than
    # the process already has (and whatever free heap the child inherits).
    html = "<html><body><p>" + "word " * 1_600_000
    result = _html_browser(html, extract_memory_mb=1, extract_timeout_s=60, max_bytes=10_000_000).open("http://a.test/")
    assert not result.ok and "could not be read" in result.content and "memory" in result.content, result.content
