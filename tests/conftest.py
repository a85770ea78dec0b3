"""Shared fixtures. Every test runs with LABKIT_HOME in a temporary folder: tests never read or
write a participant's real lab state (~/.cache/labkit)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_HOME = tempfile.mkdtemp(prefix="labkit-test-home-")
os.environ["LABKIT_HOME"] = _HOME


@pytest.fixture(scope="session")
def lab_home() -> Path:
    return Path(_HOME)


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A lab state folder of its own, for tests that create, damage or delete the CA."""
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    yield tmp_path


@pytest.fixture
def lab() -> Iterator[object]:
    """The plain messenger topology, started; stopped after the test whatever happens."""
    from labkit import Lab

    lab = Lab().start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def browser(lab_home: Path) -> Iterator[object]:
    """One real headless Chromium for the whole session (launching costs ~0.5 s; each visit gets a
    fresh context, so sharing it leaks nothing between tests). Missing Chromium fails in CI, where
    a skipped browser test would hide exactly the claims the lab makes, and skips elsewhere."""
    from labkit import LabPKI, system
    from labkit.observe.browser import Browser

    if system.find_browser() is None:
        cmd = system.install_command(["chromium"])
        if system.in_ci():
            pytest.fail(f"no Chromium found, and CI must run the browser tests. Install: {cmd}",
                        pytrace=False)
        pytest.skip(f"no Chromium found; install it with: {cmd}")
    b = Browser(LabPKI(lab_home)).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def firefox(lab_home: Path) -> Iterator[object]:
    """One real headless Firefox for the whole session, driven over WebDriver BiDi (each visit in a
    fresh user context, HSTS forgotten). Missing Firefox fails in CI, skips elsewhere."""
    from labkit import LabPKI, system
    from labkit.observe.firefox import Firefox

    if system.find_firefox() is None:
        cmd = system.install_command(["firefox"])
        if system.in_ci():
            pytest.fail(f"no Firefox found, and CI must run the Firefox tests. Install: {cmd}",
                        pytrace=False)
        pytest.skip(f"no Firefox found; install it with: {cmd}")
    b = Firefox(LabPKI(lab_home)).start()
    try:
        yield b
    finally:
        b.stop()
