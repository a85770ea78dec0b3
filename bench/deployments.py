"""What the three deployments of the story cost, measured in the real browser: ``costs.compare()``.

Direct ports, one reverse proxy, two load-balanced entry points: entry points and certificates the
browser meets, processes and listeners to run, TLS handshakes per page session, time from page load
to the first chat message, memory. Prints the table and the ratios (load balancers vs reverse
proxy, reverse proxy vs direct). Runs in a throwaway LABKIT_HOME; exits 0.

    .venv/bin/python bench/deployments.py [--rounds 9] [--nginx]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile


def show_ratios(title: str, ratios: dict[str, float | None]) -> None:
    cells = ", ".join(f"{k} {'—' if v is None else f'{v:.2f}x'}" for k, v in ratios.items())
    print(f"{title}: {cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="page sessions per deployment")
    parser.add_argument("--memory", type=int, default=3, help="fresh-process memory samples")
    parser.add_argument("--nginx", action="store_true", help="also measure the nginx proxy")
    args = parser.parse_args(argv)

    home = tempfile.mkdtemp(prefix="labkit-bench-")
    os.environ["LABKIT_HOME"] = home  # before labkit reads it: the lab CA goes here
    from labkit import system
    from labkit.notebook import costs

    if system.find_browser() is None:
        print(f"no Chromium found; install it with: {system.install_command(['chromium'])}",
              file=sys.stderr)
        return 1
    names = costs.DEFAULT + (("nginx proxy",) if args.nginx else ())
    try:
        report = costs.compare(rounds=args.rounds, memory=args.memory, deployments=names)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(report)
    print()
    show_ratios("load balancers / reverse proxy", report.ratios("load balancers", "reverse proxy"))
    show_ratios("reverse proxy / direct", report.ratios("reverse proxy", "direct"))
    show_ratios("load balancers / direct", report.ratios("load balancers", "direct"))
    print()
    for d in report.deployments:
        samples = ", ".join("—" if s is None else f"{s:.0f}" for s in d.first_message_samples)
        steps = ", ".join(f"{k} {v:.0f}" for k, v in d.steps_ms.items())
        print(f"{d.name}: first message ms [{samples}]; steps ok at (median ms) {steps}; "
              f"handshakes by listener {d.handshakes_by_listener}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
