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
from typing import Any

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


#: What Firefox's DevTools show, read from its privileged scope: per toolbox, the panel on screen,
#: the page it belongs to and the Console's messages.
_FIREFOX_TOOLBOXES = """(async () => {
  const { require } = ChromeUtils.importESModule(
    'resource://devtools/shared/loader/Loader.sys.mjs');
  const { gDevTools } = require('devtools/client/framework/devtools');
  const out = [];
  for (const t of gDevTools.getToolboxes()) {
    const tab = t.commands.descriptorFront.localTab;
    const panel = t.getPanel('webconsole');
    const messages = panel ? [...panel.hud.ui.wrapper.getStore().getState()
      .messages.mutableMessagesById.values()]
      .map(m => [m.level, String(m.messageText)]) : [];
    out.push({tool: t.currentToolId, page: tab ? tab.linkedBrowser.currentURI.spec : '',
              messages});
  }
  return JSON.stringify(out);
})()"""


def _firefox_toolboxes(headless: bool, devtools: bool) -> tuple[Any, list[dict[str, Any]]]:
    r = session.run("cors-port-mismatch", headless=headless, devtools=devtools,
                    browser="firefox")
    firefox: Any = session.shared_browser(headless, devtools, "firefox")

    async def read() -> list[dict[str, Any]]:
        # The Console renders its messages a moment after they happen: ask until one is an
        # error (or 5 s passed).
        for _ in range(50):
            reply = await firefox._cmd("script.evaluate", target={"context": firefox._chrome},
                                       awaitPromise=True, expression=_FIREFOX_TOOLBOXES)
            boxes: list[dict[str, Any]] = json.loads(reply["result"]["value"])
            if not boxes or any(level == "error" for b in boxes for level, _ in b["messages"]):
                break
            await asyncio.sleep(0.1)
        return boxes

    return r, runtime.run(runtime.on_loop(read)())


@pytest.mark.browser
@pytest.mark.firefox
def test_firefox_live_mode_keeps_the_page_with_devtools_on_the_console(display: str) -> None:
    """Live mode in Firefox: the visited page stays on screen with its DevTools opened on the
    Console before it loaded, so the room reads the browser's own red line."""
    r, toolboxes = _firefox_toolboxes(False, True)
    assert r.verdict.reason == "cors"  # the same verdict as headless
    assert len(toolboxes) == 1, toolboxes
    box, = toolboxes
    assert box["tool"] == "webconsole"
    assert "lab.test" in box["page"] or "localhost" in box["page"], box["page"]
    assert any(level == "error" and text.startswith("Cross-Origin Request Blocked")
               for level, text in box["messages"]), box["messages"]


@pytest.mark.browser
@pytest.mark.firefox
def test_twin_firefox_headed_without_devtools_opens_none(display: str) -> None:
    r, toolboxes = _firefox_toolboxes(False, False)
    assert r.verdict.reason == "cors"
    assert toolboxes == []


def test_devtools_needs_a_visible_browser() -> None:
    from labkit.observe.browser import Browser

    assert not Browser(headless=True, devtools=True).devtools  # nothing to show it on
    assert Browser(headless=False, devtools=True).devtools
