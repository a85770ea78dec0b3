"""`labkit doctor` starts each browser once before it says ok, names what each can show exactly,
and a browser (or its driver) that cannot start is a one-line reason, not a protocol error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from labkit import Browser, BrowserDriverError, Lab
from labkit.model import scenarios
from labkit.notebook import checkup


def _by_name(items: list[checkup.Check]) -> dict[str, checkup.Check]:
    return {c.name: c for c in items}


def test_doctor_starts_both_browsers_and_says_what_is_exact() -> None:
    out = subprocess.run([sys.executable, "-m", "labkit", "doctor"], capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {line.split()[1]: line for line in out.stdout.splitlines()}
    assert lines["browser"].startswith("ok") and "Chromium 1" in lines["browser"]
    assert "started" in lines["browser"] and "every certificate lesson is exact" in lines["browser"]
    assert lines["firefox"].startswith("ok") and "Firefox 1" in lines["firefox"]


def test_a_browser_that_cannot_start_is_not_ok(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed is not enough: a 'browser' that exits at once fails the doctor, with its words
    (the twin of the test above)."""
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\necho 'chromium: cannot open display' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("LABKIT_BROWSER", str(fake))
    monkeypatch.setenv("LABKIT_FIREFOX", str(fake))
    checks = _by_name(checkup.checks())
    assert not checks["browser"].ok and "did not start" in checks["browser"].detail
    assert not checks["firefox"].ok and "cannot open display" in checks["firefox"].detail
    assert not checkup.ok(list(checks.values()))


def test_a_driver_that_dies_at_start_is_named_not_blamed_on_the_lab(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A minimal Debian without libatomic1: Playwright's Node dies at start. labkit says the
    driver could not start and why — not 'the browser was stopped while visiting'."""
    node = tmp_path / "node"
    node.write_text("#!/bin/sh\necho 'node: error while loading shared libraries: libatomic.so.1:"
                    " cannot open shared object file: No such file or directory' >&2\nexit 127\n")
    node.chmod(0o755)
    monkeypatch.setenv("PLAYWRIGHT_NODEJS_PATH", str(node))
    lab = Lab(scenarios.get("cors-port-mismatch").topology, browser=Browser()).start()
    try:
        with pytest.raises(BrowserDriverError) as e:
            lab.visit()
    finally:
        lab.stop()
    text = str(e.value)
    assert text.startswith("Playwright's browser driver could not start")
    assert "libatomic.so.1" in text and "libatomic1" in text  # the cause, and the package
    assert "was the lab stopped" not in text


def test_lessons_line_names_the_inexact_lessons_when_trust_is_by_key() -> None:
    assert "exact" in checkup.lessons_line("chromium", "nss")
    spki = checkup.lessons_line("chromium", "spki")
    assert all(name in spki for name in checkup.NAME_LESSONS) and "Firefox" in spki
    for name in checkup.NAME_LESSONS:
        assert scenarios.get(name).reason == "cert-name"
    # Every cert-name lesson of the catalogue is listed: nothing inexact goes unsaid.
    assert {n for n in scenarios.names() if scenarios.get(n).reason == "cert-name"} == set(
        checkup.NAME_LESSONS)
