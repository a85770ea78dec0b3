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
def lab() -> Iterator["object"]:
    """The plain messenger topology, started; stopped after the test whatever happens."""
    from labkit import Lab

    lab = Lab().start()
    try:
        yield lab
    finally:
        lab.stop()
