"""How long `labkit tour` takes, and where the time goes: every scenario in one browser, a fresh
lab and a fresh browser context each.

Target (issue 12): the whole catalogue within 10 s on a 2-core machine, browser start included.
Printed: the tour's wall time at 1, 2 and 3 visits at once (median of rounds), the machine's CPU
seconds per visit (all processes: Chromium, the driver, labkit, nginx), and the floor: what a
fresh context with one page costs Chromium before any lab is involved.

    .venv/bin/python bench/tour.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("LABKIT_HOME", tempfile.mkdtemp(prefix="labkit-bench-"))

from labkit import runtime  # noqa: E402
from labkit.model import scenarios  # noqa: E402
from labkit.notebook.runner import tour  # noqa: E402
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    names = scenarios.names()
    t0 = time.perf_counter()
    browser = Browser().start()
    start = time.perf_counter() - t0
    walls: dict[int, list[float]] = {1: [], 2: [], 3: []}
    cpu: dict[int, list[float]] = {1: [], 2: [], 3: []}
    bad = 0
    try:
        fl_wall, fl_cpu = runtime.run(floor(browser))
        for _ in range(args.rounds):
            for jobs in walls:
                b, t = busy_seconds(), time.perf_counter()
                results = tour(names, browser=browser, concurrency=jobs)
                walls[jobs].append(time.perf_counter() - t)
                cpu[jobs].append(busy_seconds() - b)
                bad += sum(not r.ok for r in results)
    finally:
        browser.stop()
    n = len(names)
    print(f"labkit tour bench — {n} scenarios, {args.rounds} rounds, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"browser start                              {start:6.2f} s")
    print(f"floor: fresh context + page, no lab        {fl_wall:6.2f} s wall, "
          f"{fl_cpu:.2f} CPU-s per visit")
    for jobs in walls:
        w, c = statistics.median(walls[jobs]), statistics.median(cpu[jobs])
        print(f"tour, {jobs} at once (median)                {w:6.2f} s   "
              f"{c / n:.2f} CPU-s per visit, machine {c / (w * (os.cpu_count() or 1)):.0%} busy")
    best = min(statistics.median(v) for v in walls.values()) + start
    print(f"target: whole tour incl. browser start <= 10 s: {best:.1f} s "
          f"{'met' if best <= 10 else 'MISSED'}; CPU bound: {n} visits x floor "
          f"{fl_cpu:.2f} CPU-s / {os.cpu_count()} CPUs = "
          f"{n * fl_cpu / (os.cpu_count() or 1):.1f} s "
          f"before any lab work; mismatches: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
