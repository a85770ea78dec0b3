"""The ``labkit`` command (also ``python -m labkit``): up, tour, doctor."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .errors import LabError
from .lab import Lab
from .model import scenarios
from .model.topology import messenger
from .notebook import checkup


def _ports(values: list[str]) -> dict[str, int]:
    out = {}
    for v in values:
        name, _, port = v.partition("=")
        if not port.isdigit():
            raise SystemExit(f"labkit: --port takes SERVICE=PORT (e.g. web=8443), not {v!r}")
        out[name] = int(port)
    return out


def cmd_up(args: argparse.Namespace) -> int:
    topology = scenarios.get(args.scenario).topology if args.scenario else messenger()
    lab = Lab(topology, ports=_ports(args.port))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    lab.start()
    try:
        if args.json:
            print(json.dumps(lab.describe()), flush=True)
        else:
            print(f"labkit: '{topology.name}' is up (lab CA: {lab.pki.ca_pem})")
            for s in lab.services:
                print(f"  {s.name:6} {s.url}")
            print(own_browser_note(lab))
            print("Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        lab.stop()
    if not args.json:
        print("labkit: stopped.", flush=True)
    return 0


def own_browser_note(lab: Lab) -> str:
    """What an instructor's own browser needs to open these URLs, and why it will not as is."""
    from .observe.browser import spki_hash

    kinds = sorted({s.cert for s in lab.topology.services if s.tls})
    hashes = sorted({spki_hash(lab.pki.for_service(s.cert, s.host).cert.read_bytes())
                     for s in lab.topology.services if s.tls and s.cert != "rogue"})
    return (
        "Your own browser will not open these as they are: it does not trust the lab CA (labkit "
        "never puts it in a real trust store) and cannot resolve *.lab.test. Use a throwaway "
        "profile:\n  chromium --user-data-dir=$(mktemp -d) --host-resolver-rules=\"MAP *.lab.test "
        "127.0.0.1, MAP evil-lab.test 127.0.0.1\" --ignore-certificate-errors-spki-list="
        + ",".join(hashes)
        + f"\n  (certificates here: {', '.join(kinds) or 'none'}; trusted by key, so a wrong-name "
        "certificate is accepted there: the browser lessons run in labkit's own Chromium.)")


def cmd_tour(args: argparse.Namespace) -> int:
    from .notebook import runner
    from .observe import BROWSERS, make_browser

    if args.list:
        for name in scenarios.names():
            sc = scenarios.get(name)
            print(f"{name:28} {sc.expected:8} {sc.rule}")
        return 0
    selected = args.scenario or None
    if selected:
        for name in selected:
            scenarios.get(name)  # an unknown name lists the known ones before anything starts
    names = list(BROWSERS) if args.browser == "all" else [args.browser]
    # Progress goes to stderr so that --json leaves stdout to the one JSON object.
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    browsers = [make_browser(n) for n in names]
    shots = Path(args.screenshots) if args.screenshots else None
    try:
        tours = runner.tours(selected, browsers, progress=progress, concurrency=args.jobs,
                             screenshots=shots)
        versions = {b.name: f"{b.label} {b.version}" for b in browsers}
    finally:
        for b in browsers:
            b.stop()
    if args.json:
        if len(names) == 1:
            print(runner.as_json(tours[names[0]], browsers[0].version), flush=True)
        else:
            print(runner.as_json_all({n: (versions[n], tours[n]) for n in names}), flush=True)
        return 0 if all(r.ok for rs in tours.values() for r in rs) else 1
    if len(names) > 1:
        print(runner.side_by_side(tours, versions))
    for n in names:
        results = tours[n]
        if len(names) == 1:
            print(runner.table(results))
        bad = [r for r in results if not r.ok]
        print(f"\n{len(results) - len(bad)} of {len(results)} scenarios behaved as expected "
              f"in {versions[n]}.")
        for r in bad:
            print(f"  MISMATCH {r.name}: {'; '.join(r.problems)}")
    return 0 if all(r.ok for rs in tours.values() for r in rs) else 1


def runner_concurrency() -> int:
    from .notebook.runner import TOUR_CONCURRENCY

    return TOUR_CONCURRENCY


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--jobs takes a whole number of 1 or more, not {text!r}")
    return n


def cmd_doctor(args: argparse.Namespace) -> int:
    items = checkup.checks()
    for c in items:
        print(c.line())
    return 0 if checkup.ok(items) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit", description="the WebSocket security lab")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a topology and keep it up until Ctrl-C or SIGTERM")
    up.add_argument("--scenario", help="a scenario name (see `labkit tour --list`)")
    up.add_argument("--json", action="store_true", help="print one JSON line describing the lab")
    up.add_argument("--port", action="append", default=[], metavar="SERVICE=PORT",
                    help="fixed port for a service (instructors); repeatable")
    up.set_defaults(func=cmd_up)
    tr = sub.add_parser("tour", help="run scenarios in a real browser, compare with expectations")
    tr.add_argument("--scenario", action="append", metavar="NAME",
                    help="run only this scenario (repeatable); default: all")
    tr.add_argument("--json", action="store_true", help="print one JSON object")
    tr.add_argument("--screenshots", metavar="DIR", help="save a PNG per scenario into DIR")
    tr.add_argument("--list", action="store_true", help="list the scenarios and exit")
    tr.add_argument("--jobs", type=_jobs, default=runner_concurrency(), metavar="N",
                    help="scenarios run at once in each browser (default: %(default)s)")
    tr.add_argument("--browser", choices=["chromium", "firefox", "all"], default="chromium",
                    help="which browser looks (all: side by side; default: %(default)s)")
    tr.set_defaults(func=cmd_tour)
    doc = sub.add_parser("doctor", help="check this machine for everything the lab needs")
    doc.set_defaults(func=cmd_doctor)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except LabError as e:
        print(f"labkit: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
