"""How long `labkit tour` takes: every scenario in one browser, a fresh lab each.

The target (issue 4): the tour over the scenario families of the story — CORS, WebSocket,
mixed content, certificates, server-to-server, socket.io — in under 15 s on a 2-core machine.
The proxy and load-balancer scenarios (issue 5) are timed too, separately.

    .venv/bin/python bench/tour.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("LABKIT_HOME", tempfile.mkdtemp(prefix="labkit-bench-"))

from labkit.model import scenarios  # noqa: E402
from labkit.notebook.runner import tour  # noqa: E402
from labkit.observe.browser import Browser  # noqa: E402

PROXY_FAMILY = {"reverse-proxy", "reverse-proxy-ws-scheme", "https-redirect", "nginx-proxy",
                "lb-managed-certs", "lb-managed-certs-no-cors"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    core = [n for n in scenarios.names() if n not in PROXY_FAMILY]
    proxies = [n for n in scenarios.names() if n in PROXY_FAMILY]
    t0 = time.perf_counter()
    browser = Browser().start()
    start = time.perf_counter() - t0
    times: dict[str, list[float]] = {"core": [], "proxies": []}
    bad = 0
    try:
        for _ in range(args.rounds):
            for key, names in (("core", core), ("proxies", proxies)):
                t = time.perf_counter()
                results = tour(names, browser=browser)
                times[key].append(time.perf_counter() - t)
                bad += sum(not r.ok for r in results)
    finally:
        browser.stop()
    load = os.getloadavg()[0]
    print(f"labkit tour bench — {args.rounds} rounds, {os.cpu_count()} CPUs, load {load:.1f}")
    print(f"browser start                                   {start:6.2f} s")
    for key, names in (("core", core), ("proxies", proxies)):
        med = statistics.median(times[key])
        print(f"{len(names):2} {key:9} scenarios (median of {args.rounds})        {med:6.2f} s"
              f"   ({med / len(names):.2f} s each)")
    total = statistics.median(times["core"]) + start
    print(f"target: issue-4 tour incl. browser start < 15 s: {total:.1f} s "
          f"{'met' if total < 15 else 'MISSED'}; mismatches: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
