"""When may a security or terminal test be skipped? Only on a developer's machine that asked.

In CI (CI=true, which every CI sets) a missing bubblewrap or tmux fails the test and says why: a
security table that silently skips is a green run that proved nothing. Locally, a developer
without them sets EVOLVE_TEST_ALLOW_SKIP=1 to skip instead; without it the tests fail too.
"""

from __future__ import annotations

import os

import pytest

SKIP_VARIABLE = "EVOLVE_TEST_ALLOW_SKIP"


def skip_allowed() -> bool:
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return not in_ci and os.environ.get(SKIP_VARIABLE, "") == "1"


def missing(reason: str) -> None:
    """Skip (when allowed) or fail with `reason` and the way to skip."""
    if skip_allowed():
        pytest.skip(reason)
    pytest.fail(
        f"{reason}. Security and terminal tests do not skip silently: install the tool "
        f"(scripts/bootstrap.sh), or set {SKIP_VARIABLE}=1 to skip them on a developer machine "
        "(never honoured when CI=true)",
        pytrace=False,
    )
