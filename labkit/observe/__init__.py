"""The browsers labkit drives (Chromium through Playwright, Firefox through WebDriver BiDi) and
what one visit showed."""

from __future__ import annotations

from typing import Any

from ..errors import LabError
from ..serve.pki import LabPKI
from .browser import Browser
from .driver import Driver
from .firefox import Firefox

#: The browsers a visit, a run or the tour can ask for, by name.
BROWSERS: dict[str, type[Driver]] = {"chromium": Browser, "firefox": Firefox}


def check_name(name: str) -> str:
    """``name`` if labkit drives that browser, else a one-line LabError saying what to write."""
    if not isinstance(name, str) or name.lower() not in BROWSERS:
        raise LabError(f"browser={name!r}: labkit drives " + " and ".join(
            repr(n) for n in BROWSERS) + "; write browser=\"firefox\", for example")
    return name.lower()


def make_browser(name: str = "chromium", pki: LabPKI | None = None, **kw: Any) -> Driver:
    """A new, not yet started browser of that kind."""
    return BROWSERS[check_name(name)](pki, **kw)


__all__ = ["BROWSERS", "Browser", "Driver", "Firefox", "check_name", "make_browser"]
