"""The instructor's live mode: a visible browser whose pages open with DevTools on the Console,
shown on a virtual display (Xvfb) here, as on a projector."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from labkit import runtime
from labkit.notebook import session


@pytest.fixture
def display(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.fail("Xvfb is missing: `make test` installs it (apt package xvfb)")
    number = f":{90 + os.getpid() % 100}"
    proc = subprocess.Popen([xvfb, number, "-screen", "0", "1280x900x24"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    monkeypatch.setenv("DISPLAY", number)
    try:
        yield number
    finally:
        session._stop_browser()
        proc.terminate()
        proc.wait(5)


@pytest.mark.browser
def test_live_mode_shows_the_page_with_devtools_on_the_console(display: str) -> None:
    r = session.run("mixed-content-ws", headless=False, devtools=True)
    assert r.verdict.reason == "mixed-content"  # the same verdict as headless
    browser = session.shared_browser(False, True)
    assert browser.devtools and not browser.headless

    async def devtools_panel() -> tuple[list[str], str]:
        cdp = await browser._browser.new_browser_cdp_session()
        got: list[str] = []
        cdp.on("Target.receivedMessageFromTarget", lambda e: got.append(e["message"]))
        targets = (await cdp.send("Target.getTargets"))["targetInfos"]
        tools = [t for t in targets if t["url"].startswith("devtools://")]
        pages = [t["url"] for t in targets if t["type"] == "page"
                 and not t["url"].startswith("devtools://")]
        sid = (await cdp.send("Target.attachToTarget",
                              {"targetId": tools[-1]["targetId"], "flatten": False}))["sessionId"]
        await cdp.send("Target.sendMessageToTarget", {"sessionId": sid, "message": json.dumps(
            {"id": 7, "method": "Runtime.evaluate",
             "params": {"expression": "typeof DevToolsAPI.showPanel", "returnByValue": True}})})
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.1)
        await cdp.detach()
        return pages, got[0] if got else ""


    pages, reply = runtime.run(runtime.on_loop(devtools_panel)())
    # The visited page stays open (with its DevTools) for the room to read.
    assert any(":" in p and "lab.test" in p for p in pages), pages
    assert '"value":"function"' in reply, reply


def test_devtools_needs_a_visible_browser() -> None:
    from labkit.observe.browser import Browser

    assert not Browser(headless=True, devtools=True).devtools  # nothing to show it on
    assert Browser(headless=False, devtools=True).devtools
