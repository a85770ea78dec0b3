"""The ``labkit`` command (also ``python -m labkit``): up, doctor."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from . import doctor, scenarios
from .errors import LabError
from .lab import Lab
from .topology import messenger


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
            print("Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        lab.stop()
    if not args.json:
        print("labkit: stopped.", flush=True)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    items = doctor.checks()
    for c in items:
        print(c.line())
    return 0 if doctor.ok(items) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit", description="the WebSocket security lab")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a topology and keep it up until Ctrl-C or SIGTERM")
    up.add_argument("--scenario", help="a scenario name (see `labkit tour --list`)")
    up.add_argument("--json", action="store_true", help="print one JSON line describing the lab")
    up.add_argument("--port", action="append", default=[], metavar="SERVICE=PORT",
                    help="fixed port for a service (instructors); repeatable")
    up.set_defaults(func=cmd_up)
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
