"""What the lab leaves on the machine: listeners on loopback only, private keys private.

Participants share conference Wi-Fi: nothing labkit opens may be reachable from another machine.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from labkit import Lab, Page, Service, Topology

LOOPBACK = {"127.0.0.1", "::1"}


def my_listeners() -> set[tuple[str, int]]:
    """(address, port) of every TCP socket this process listens on, IPv4 and IPv6."""
    pid = os.getpid()
    return {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
            if c.pid == pid and c.status == psutil.CONN_LISTEN}


def proc_net_listeners() -> set[tuple[str, int]]:
    """The same from the kernel's own tables (/proc/net/tcp{,6}, state 0A = LISTEN), all pids."""
    out = set()
    for name, width in (("tcp", 4), ("tcp6", 16)):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":
                continue
            hexip, hexport = fields[1].split(":")
            raw = bytes.fromhex(hexip)
            # the kernel prints each 32-bit word in host (little-endian) order
            ip = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
            out.add((str(ipaddress.ip_address(ip)), int(hexport, 16)))
    return out


@pytest.fixture
def every_kind_of_lab() -> Iterator[list[Lab]]:
    """Every kind of service, every kind of lab host name, TLS and plain, plus the messenger."""
    everything = Topology("hygiene", (
        Service("web", "web"),
        Service("api", "api", host="api.lab.test"),
        Service("chat", "chat", host="::1"),
        Service("evil", "evil", host="evil.lab.test"),
        Service("plain-web", "web", tls=False),
        Service("plain-chat", "chat", host="127.0.0.1", tls=False),
    ), page=Page(api="api", ws="chat"))
    labs = [Lab(everything).start(), Lab().start()]
    yield labs
    for lab in labs:
        lab.stop()


def test_every_listener_the_lab_opens_is_on_loopback(every_kind_of_lab: list[Lab]) -> None:
    lab_ports = {s.port for lab in every_kind_of_lab for s in lab.services}
    assert len(lab_ports) == 9
    mine = {(ip, port) for ip, port in my_listeners() if port in lab_ports}
    # one listener per service: found them all (so the check below is not vacuous) ...
    assert {port for _, port in mine} == lab_ports
    assert len(mine) == len(lab_ports)
    # ... and every one is bound to a loopback address, never 0.0.0.0 or ::
    assert {ip for ip, _ in mine} <= LOOPBACK
    # the kernel's own table agrees (psutil could, in principle, hide a dual-stack socket)
    kernel = {(ip, port) for ip, port in proc_net_listeners() if port in lab_ports}
    assert kernel == mine
    # and the address matches what each service's URL says
    for lab in every_kind_of_lab:
        for s in lab.services:
            assert (("::1" if s.host == "::1" else "127.0.0.1"), s.port) in mine


def test_stopping_closes_every_listener(every_kind_of_lab: list[Lab]) -> None:
    lab_ports = {s.port for lab in every_kind_of_lab for s in lab.services}
    for lab in every_kind_of_lab:
        lab.stop()
    assert not {port for _, port in my_listeners()} & lab_ports


def test_lab_keys_are_private_and_in_the_test_home(lab: Lab, lab_home: Path) -> None:
    pki = lab.pki.dir
    # tests never touch a participant's real lab state
    assert pki.resolve().is_relative_to(lab_home.resolve())
    keys = list(pki.rglob("*.key"))
    assert {k.name for k in keys} >= {"ca.key", "rogue-ca.key", "lab.key"}
    for path in list(pki.rglob("*.key")) + list(pki.rglob("*.pem")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in [pki, *[p for p in pki.rglob("*") if p.is_dir()]]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


@pytest.mark.browser
def test_the_lab_state_folder_is_safe_to_delete_at_any_time(fresh_home: Path) -> None:
    import shutil

    from labkit import Lab, messenger
    from labkit.observe.browser import Browser

    browser = Browser()
    try:
        with Lab(messenger(name="hygiene-delete"), browser=browser) as lab:
            assert lab.visit().verdict().outcome == "allowed"
        shutil.rmtree(fresh_home)  # mid-workshop: "what is this folder?" — gone
        with Lab(messenger(name="hygiene-delete"), browser=browser) as lab:
            # A new CA was made, and the browser now trusts it (not the deleted one).
            assert (fresh_home / "pki" / "ca.pem").exists()
            assert lab.visit().verdict().outcome == "allowed"
    finally:
        browser.stop()


def test_no_lab_ca_secret_is_printed_into_a_notebook() -> None:
    import nbformat

    from labkit.serve.pki import LabPKI

    key_lines = {line for line in LabPKI().ensure().dir.joinpath("ca.key").read_text().splitlines()
                 if len(line) > 20}
    for path in sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb")):
        text = nbformat.writes(nbformat.read(path, as_version=4))
        assert "PRIVATE KEY" not in text, path.name
        assert not any(line in text for line in key_lines), path.name


def test_temp_folders_of_dead_owners_are_swept() -> None:
    """A killed kernel leaves its browser HOME behind; the next labkit sweeps it away."""
    import subprocess
    import sys

    from labkit.serve import tempdirs

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead_pid = int(child.stdout)
    orphan = Path(tempdirs.make("labkit-test-sweep-"))
    (orphan / tempdirs.OWNER).write_text(str(dead_pid))
    mine = Path(tempdirs.make("labkit-test-sweep-"))  # made after the sweep, by a live owner
    try:
        assert not orphan.exists()  # swept by the second make()
        assert mine.exists()
        assert tempdirs.sweep("labkit-test-sweep-") == 0  # never the living
    finally:
        import shutil

        shutil.rmtree(mine, ignore_errors=True)
        shutil.rmtree(orphan, ignore_errors=True)
