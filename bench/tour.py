"""How long `labkit tour` takes, and where the time goes: every scenario in one browser, a fresh
lab and a fresh browser context each.

Targets: the whole catalogue within 10 s on a 2-core machine, browser start included (issue 12,
Chromium); both browsers within 25 s (issue 15).
Printed: the tour's wall time at 1, 2 and 3 visits at once (median of rounds), the machine's CPU
seconds per visit (all processes: Chromium, the driver, labkit, nginx), and the floor: what a
fresh context with one page costs Chromium before any lab is involved.

    .venv/bin/python bench/tour.py [--rounds N] [--browser chromium|firefox|all]

Firefox visits one page at a time per process, so its tour runs two processes (TOUR_LANES);
`all` is `labkit tour --browser all`: both browsers at once, their starts included. Tours keep
no screenshot unless asked (`--screenshots`); the last line per browser shows what one costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LABKIT_HOME", tempfile.mkdtemp(prefix="labkit-bench-"))

from labkit import runtime  # noqa: E402
from labkit.model import scenarios  # noqa: E402
from labkit.notebook.runner import TOUR_CONCURRENCY, tour, tours  # noqa: E402
from labkit.observe import BROWSERS, make_browser  # noqa: E402
from labkit.observe.browser import Browser  # noqa: E402


def busy_seconds() -> float:
    """CPU time the whole machine spent busy (every process), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


@runtime.on_loop
async def floor(browser: Browser, n: int = 20) -> tuple[float, float]:
    """Wall and CPU seconds of a fresh context + page + a one-line page: the part of every
    visit that is Chromium starting a renderer, with no lab at all."""
    b0, t0 = busy_seconds(), time.perf_counter()
    for _ in range(n):
        context = await browser._browser.new_context()
        page = await context.new_page()
        await page.goto("data:text/html,<p>hi</p>")
        await context.close()
    return (time.perf_counter() - t0) / n, (busy_seconds() - b0) / n


def one_browser(kind: str, rounds: int, names: list[str]) -> tuple[float, int]:
    """Print one browser's figures; return (best tour incl. start, mismatches)."""
    t0 = time.perf_counter()
    browser = make_browser(kind).start()
    start = time.perf_counter() - t0
    walls: dict[int, list[float]] = {1: [], 2: [], 3: []}
    cpu: dict[int, list[float]] = {1: [], 2: [], 3: []}
    shots: list[float] = []
    bad = 0
    try:
        floor_line = ""
        if kind == "chromium":
            fl_wall, fl_cpu = runtime.run(floor(browser))  # type: ignore[arg-type]
            floor_line = (f"floor: fresh context + page, no lab        {fl_wall:6.2f} s wall, "
                          f"{fl_cpu:.2f} CPU-s per visit")
        for _ in range(rounds):
            for jobs in walls:
                b, t = busy_seconds(), time.perf_counter()
                results = tour(names, browser=browser, concurrency=jobs)
                walls[jobs].append(time.perf_counter() - t)
                cpu[jobs].append(busy_seconds() - b)
                bad += sum(not r.ok for r in results)
        with tempfile.TemporaryDirectory() as d:  # what keeping a picture per scenario costs
            t = time.perf_counter()
            bad += sum(not r.ok for r in tour(names, browser=browser, screenshots=Path(d)))
            shots.append(time.perf_counter() - t)
    finally:
        browser.stop()
    n = len(names)
    print(f"-- {browser.label} {browser.version}")
    print(f"browser start                              {start:6.2f} s")
    if floor_line:
        print(floor_line)
    for jobs in walls:
        w, c = statistics.median(walls[jobs]), statistics.median(cpu[jobs])
        print(f"tour, {jobs} at once (median)                {w:6.2f} s   "
              f"{c / n:.2f} CPU-s per visit, machine {c / (w * (os.cpu_count() or 1)):.0%} busy")
    print(f"tour, {TOUR_CONCURRENCY} at once, a screenshot per scenario  {shots[0]:6.2f} s")
    best = statistics.median(walls[TOUR_CONCURRENCY]) + start
    return best, bad


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--browser", choices=["chromium", "firefox", "all"], default="chromium")
    args = ap.parse_args()
    names = scenarios.names()
    print(f"labkit tour bench — {len(names)} scenarios, {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start")
    bad = 0
    if args.browser == "all":
        walls = []
        for _ in range(args.rounds):
            browsers = [make_browser(k) for k in BROWSERS]
            t = time.perf_counter()
            try:  # what `labkit tour --browser all` does: both browsers at once, starts included
                got = tours(names, browsers)
            finally:
                for b in browsers:
                    b.stop()
            walls.append(time.perf_counter() - t)
            bad += sum(not r.ok for rs in got.values() for r in rs)
        w = statistics.median(walls)
        print(f"both browsers at once, starts included (median)  {w:6.2f} s  "
              f"(rounds: {', '.join(f'{x:.1f}' for x in walls)})")
        print(f"target (issue 15): both within 25 s: {'met' if w <= 25 else 'MISSED'}; "
              f"mismatches: {bad}")
        return 1 if bad else 0
    best, bad = one_browser(args.browser, args.rounds, names)
    target = 10 if args.browser == "chromium" else 25
    print(f"target: whole tour incl. browser start <= {target} s: {best:.1f} s "
          f"{'met' if best <= target else 'MISSED'}; mismatches: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
