"""The agent's default tool set, and the small helpers behind `evolve tool ...`."""

from __future__ import annotations

from tools.base import Tool, ToolResult, tool
from tools.browser import Browser
from tools.calculator import CalcError, calculator, evaluate
from tools.sandbox import Sandbox, SandboxResult, SandboxUnavailable
from tools.settings import SandboxSettings
from tools.text import terminal_safe

__all__ = ["default_tools", "format_sandbox_result", "main_calc", "main_fetch", "main_python"]


def format_sandbox_result(result: SandboxResult) -> str:
    parts = [f"exit code {result.exit_code} after {result.duration_s:.2f} s"]
    if result.limit:
        parts[0] += f" (limit hit: {result.limit})"
    if result.stdout:
        parts.append("stdout:\n" + result.stdout.rstrip("\n"))
    if result.stderr:
        parts.append("stderr:\n" + result.stderr.rstrip("\n"))
    if not result.stdout and not result.stderr:
        parts.append("(no output)")
    return "\n".join(parts)


def _python_tool(sandbox: SandboxSettings) -> Tool:
    # Built on first use, so an agent without bubblewrap still starts and the model learns
    # from the tool's answer that Python is unavailable.
    holder: dict[str, Sandbox] = {}

    def python(code: str) -> ToolResult:
        """Run a Python 3 script in an isolated sandbox and return its output.

        No network, no access to files outside a scratch directory, limited time and memory.
        Print what you want to see.

        Args:
            code: The complete Python script to run.
        """
        if "box" not in holder:
            try:
                holder["box"] = Sandbox(sandbox)
            except SandboxUnavailable as exc:
                return ToolResult(ok=False, content=f"python is unavailable: {exc}")
        result = holder["box"].run(code)
        return ToolResult(
            ok=result.ok,
            content=format_sandbox_result(result),
            data={"exit_code": result.exit_code, "limit": result.limit, "duration_s": result.duration_s},
        )

    return tool(python, name="python")


def default_tools(settings) -> list[Tool]:
    """calculator, python, open_url, find_in_page, follow_link: one browser session shared.

    `settings` is any object with `sandbox` and `browser` sections (the agent's `Settings`)."""
    browser = Browser(settings.browser)
    return [
        calculator,
        _python_tool(settings.sandbox),
        tool(browser.open, name="open_url"),
        tool(browser.find, name="find_in_page"),
        tool(browser.follow, name="follow_link"),
    ]


def main_calc(expr: str) -> tuple[int, str]:
    """`evolve tool calc EXPR`: (exit code, text to print)."""
    try:
        return 0, evaluate(expr)
    except CalcError as exc:
        return 1, terminal_safe(f"error: {exc}")


def main_python(code: str, settings) -> tuple[int, str]:
    """`evolve tool python FILE|-` with the file's text (or stdin's): (exit code, text to print)."""
    try:
        box = Sandbox(settings.sandbox)
    except SandboxUnavailable as exc:
        return 2, f"error: {exc}"
    result = box.run(code)
    text = format_sandbox_result(result) + f"\nisolation: {', '.join(result.isolation)}"
    return (0 if result.ok else 1), terminal_safe(text)


def main_fetch(url: str, settings) -> tuple[int, str]:
    """`evolve tool fetch URL`: (exit code, the page as the model would see it)."""
    result = Browser(settings.browser).open(url)
    return (0 if result.ok else 1), terminal_safe(result.content if result.ok else f"error: {result.content}")
