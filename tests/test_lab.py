"""``Lab``: real sockets, real TLS, and a lifecycle that survives learners re-running cells."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import aiohttp
import psutil
import pytest
from websockets.asyncio.client import connect

from labkit import (
    CAFileMissingError,
    CorsPolicy,
    InvalidOriginError,
    Lab,
    LabNotRunningError,
    LabPKI,
    Page,
    PortInUseError,
    Service,
    Topology,
    TopologyError,
    UnknownHostError,
    UnknownScenarioError,
    messenger,
)
from labkit.notebook.display import lab_html

NO_PAGE = Page(api=None, ws=None, steps=())


# -- helpers -------------------------------------------------------------------------------------
def listening_ports() -> set[int]:
    """Ports this process listens on (TCP, IPv4 and IPv6)."""
    return {c.laddr.port for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now on 127.0.0.1 (held together so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_free(port: int, addr: str = "127.0.0.1") -> bool:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with closing(socket.socket(family)) as s:
        try:
            s.bind((addr, port))
        except OSError:
            return False
        return True


def get(url: str, ctx: ssl.SSLContext | None) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
        return r.status, r.read()


def tls_handshake(port: int, ctx: ssl.SSLContext, name: str, addr: str = "127.0.0.1") -> dict:
    """Complete a TLS handshake to ``addr:port`` asking for ``name``; return the peer cert."""
    raw = socket.create_connection((addr, port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname=name) as tls:
        return tls.getpeercert()


async def chat_join(url: str, ctx: ssl.SSLContext, origin: str) -> dict:
    async with connect(url, ssl=ctx, origin=origin, open_timeout=10) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "join", "room": "general"}))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def thread_names() -> list[str]:
    return sorted(t.name for t in threading.enumerate())


@pytest.fixture
def stopped_labs() -> Iterator[list[Lab]]:
    """Labs a test starts itself; stopped afterwards whatever happens."""
    labs: list[Lab] = []
    yield labs
    for lab in labs:
        lab.stop()


# -- real TLS to every service -------------------------------------------------------------------
def test_a_client_trusting_the_lab_ca_reaches_every_service(lab: Lab) -> None:
    ctx = lab.pki.client_context()
    assert {s.name for s in lab.services} == {"web", "api", "chat"}
    for svc in lab.services:
        cert = tls_handshake(svc.port, ctx, "localhost")
        assert ("organizationName", "labkit") in [kv for rdn in cert["issuer"] for kv in rdn]
    status, body = get(lab.url("web", "/"), ctx)
    assert status == 200 and b"<html" in body.lower()
    status, body = get(lab.url("api", "/api/hello"), ctx)
    assert status == 200 and json.loads(body)["service"] == "api"
    joined = asyncio.run(chat_join(lab.url("chat"), ctx, lab.origin("web")))
    assert joined["type"] == "history" and joined["room"] == "general"


def test_a_client_without_the_lab_ca_is_refused(lab: Lab) -> None:
    # Twin of the test above: the system store alone does not trust the lab.
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_handshake(lab.info("api").port, ssl.create_default_context(), "localhost")


def test_the_rogue_certificate_fails_verification_and_the_lab_one_passes(
    stopped_labs: list[Lab],
) -> None:
    topo = Topology("rogue-test", (Service("good", "web"), Service("bad", "web", cert="rogue")),
                    page=NO_PAGE)
    lab = Lab(topo).start()
    stopped_labs.append(lab)
    ctx = lab.pki.client_context()
    assert get(lab.url("good", "/"), ctx)[0] == 200
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        tls_handshake(lab.info("bad").port, ctx, "localhost")
    with pytest.raises(urllib.error.URLError) as err:
        get(lab.url("bad", "/"), ctx)
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)


def test_the_wrong_name_certificate_fails_only_on_the_name(stopped_labs: list[Lab]) -> None:
    topo = Topology("wrong-name-test", (
        Service("right", "chat", host="ws.lab.test"),
        Service("wrong", "chat", host="ws.lab.test", cert="wrong-name"),
    ), page=NO_PAGE)
    lab = Lab(topo).start()
    stopped_labs.append(lab)
    ctx = lab.pki.client_context()
    assert lab.url("right").startswith("wss://ws.lab.test:")
    assert tls_handshake(lab.info("right").port, ctx, "ws.lab.test")
    with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname mismatch"):
        tls_handshake(lab.info("wrong").port, ctx, "ws.lab.test")


def test_ipv6_lab_names_and_plain_http_get_the_right_urls(stopped_labs: list[Lab]) -> None:
    topo = Topology("names-test", (
        Service("v6", "web", host="::1"),
        Service("app", "web", host="app.lab.test"),
        Service("plain", "web", tls=False),
    ), page=NO_PAGE)
    lab = Lab(topo).start()
    stopped_labs.append(lab)
    ctx = lab.pki.client_context()
    assert lab.url("v6") == f"https://[::1]:{lab.info('v6').port}"
    assert lab.url("app") == f"https://app.lab.test:{lab.info('app').port}"
    assert lab.url("plain") == f"http://localhost:{lab.info('plain').port}"
    assert get(lab.url("v6", "/"), ctx)[0] == 200
    assert get(lab.url("plain", "/"), None)[0] == 200
    assert tls_handshake(lab.info("app").port, ctx, "app.lab.test")


# -- lifecycle -----------------------------------------------------------------------------------
def test_start_is_idempotent(lab: Lab) -> None:
    before = lab.describe()
    ports = listening_ports()
    assert lab.start() is lab
    assert lab.describe() == before
    assert listening_ports() == ports


def test_stop_can_be_called_any_number_of_times() -> None:
    lab = Lab()
    lab.stop()  # never started
    lab.start()
    ports = [s.port for s in lab.services]
    for _ in range(3):
        lab.stop()
    assert not lab.running
    assert all(port_is_free(p) for p in ports)
    assert "stopped" in repr(lab)


def test_a_stopped_lab_starts_again(stopped_labs: list[Lab]) -> None:
    lab = Lab().start()
    stopped_labs.append(lab)
    lab.stop()
    lab.start()
    assert get(lab.url("api", "/api/hello"), lab.pki.client_context())[0] == 200


def _one_cycle() -> None:
    lab = Lab().start()
    ctx = lab.pki.client_context()
    get(lab.url("web", "/"), ctx)
    get(lab.url("api", "/api/rooms"), ctx)
    asyncio.run(chat_join(lab.url("chat"), ctx, lab.origin("web")))
    lab.stop()


def test_start_stop_cycles_leak_no_socket_thread_or_fd() -> None:
    _one_cycle()  # warm-up: starts the labkit-loop thread, loads the CA, fills caches
    fd_before, threads_before, ports_before = fds(), thread_names(), listening_ports()
    assert threads_before.count("labkit-loop") == 1
    for _ in range(5):
        _one_cycle()
    assert listening_ports() == ports_before
    assert thread_names() == threads_before
    assert threading.active_count() == len(threads_before)
    assert fds() == fd_before


def test_running_the_same_topology_again_replaces_the_old_lab(stopped_labs: list[Lab]) -> None:
    old = Lab().start()
    stopped_labs.append(old)
    old_ports = [s.port for s in old.services]
    new = Lab().start()  # a learner re-running the cell
    stopped_labs.append(new)
    assert not old.running
    assert "stopped" in repr(old)
    assert new.running
    new_ports = {s.port for s in new.services}
    assert listening_ports() >= new_ports
    # the old lab's ports are closed (unless the new lab happened to get one of them)
    assert not (set(old_ports) - new_ports) & listening_ports()


def test_a_different_topology_runs_alongside(stopped_labs: list[Lab]) -> None:
    a = Lab().start()
    b = Lab(messenger(name="other")).start()
    stopped_labs.extend([a, b])
    assert a.running and b.running


def test_sync_urllib_from_the_calling_thread_while_the_lab_runs(lab: Lab) -> None:
    # The servers live on the labkit-loop thread, so a blocking call here cannot stall them.
    assert threading.current_thread() is threading.main_thread()
    status, body = get(lab.url("api", "/api/rooms"), lab.pki.client_context())
    assert status == 200
    assert json.loads(body) == {"rooms": ["general", "random"]}


def test_async_api_inside_asyncio_run() -> None:
    async def main() -> tuple[int, dict, bool]:
        lab = Lab()
        assert await lab.astart() is lab
        assert await lab.astart() is lab  # idempotent too
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(lab.url("api", "/api/hello"),
                                    ssl=lab.pki.client_context()) as r:
                    status, body = r.status, await r.json()
        finally:
            await lab.astop()
            await lab.astop()
        return status, body, lab.running

    status, body, running = asyncio.run(main())
    assert status == 200 and body["service"] == "api"
    assert not running


def test_lifecycle_calls_sent_together_run_one_after_the_other() -> None:
    """Two starts awaited together (a cell run twice in a row from async code) start one set of
    servers; a stop sent during a start waits for it and then frees every port."""
    async def cell() -> tuple[set[int], set[int], bool]:
        lab = Lab(messenger(name="lifecycle-together"))
        before = listening_ports()
        first, second = await asyncio.gather(lab.astart(), lab.astart())
        assert first is second is lab
        started = listening_ports() - before
        await asyncio.gather(lab.astop(), lab.astart(), lab.astop())
        return started, listening_ports() - before, lab.running

    started, left, running = asyncio.run(cell())
    assert len(started) == 3, f"one start should open web, api and chat: {sorted(started)}"
    assert left == set() and not running


def test_sync_context_manager_stops_even_on_error() -> None:
    with Lab() as lab:
        assert lab.running
        ports = [s.port for s in lab.services]
        assert get(lab.url("web", "/"), lab.pki.client_context())[0] == 200
    assert not lab.running and all(port_is_free(p) for p in ports)

    with pytest.raises(ZeroDivisionError):
        with Lab() as lab2:
            ports = [s.port for s in lab2.services]
            1 / 0  # noqa: B018
    assert not lab2.running and all(port_is_free(p) for p in ports)


def test_async_context_manager() -> None:
    async def main() -> tuple[Lab, list[int], int]:
        async with Lab() as lab:
            assert lab.running
            async with aiohttp.ClientSession() as http:
                async with http.get(lab.url("web", "/"), ssl=lab.pki.client_context()) as r:
                    status = r.status
            return lab, [s.port for s in lab.services], status

    lab, ports, status = asyncio.run(main())
    assert status == 200
    assert not lab.running and all(port_is_free(p) for p in ports)


def test_fixed_ports_and_a_quick_restart_on_them(stopped_labs: list[Lab]) -> None:
    web, api = free_ports(2)
    lab = Lab(ports={"web": web, "api": api}).start()
    stopped_labs.append(lab)
    assert lab.info("web").port == web and lab.url("web") == f"https://localhost:{web}"
    assert lab.info("api").port == api
    assert lab.info("chat").port not in (0, web, api)
    get(lab.url("web", "/"), lab.pki.client_context())  # leaves a TIME_WAIT on the server side
    lab.stop()
    lab.start()  # the instructor re-runs the cell: same URLs again, no "address in use"
    assert lab.url("web") == f"https://localhost:{web}"


# -- errors a learner can act on, with nothing left running --------------------------------------
def test_port_in_use_fails_clearly_and_frees_the_other_ports() -> None:
    web, api, chat = free_ports(3)
    ours = socket.socket()
    ours.bind(("127.0.0.1", chat))
    ours.listen(1)
    try:
        before = listening_ports()
        lab = Lab(ports={"web": web, "api": api, "chat": chat})
        with pytest.raises(PortInUseError) as err:
            lab.start()
        msg = str(err.value)
        assert f"port {chat} for service 'chat' is already in use" in msg
        assert "leave the port out (port=0)" in msg
        assert "Nothing was left running" in msg
        assert (err.value.service, err.value.port) == ("chat", chat)
        assert not lab.running
        assert listening_ports() == before
        assert port_is_free(web) and port_is_free(api)
        with pytest.raises(LabNotRunningError):
            lab.url("web")
    finally:
        ours.close()
    lab.start()  # once the port is free, the same Lab starts
    try:
        assert lab.info("chat").port == chat
    finally:
        lab.stop()


@pytest.mark.parametrize("host", ["example.com", "10.0.0.1"])
def test_unknown_host_name(host: str) -> None:
    before = listening_ports()
    with pytest.raises(UnknownHostError) as err:
        Lab(messenger(host=host)).start()
    msg = str(err.value)
    assert f"host name '{host}' for service 'web' is not a lab name" in msg
    assert "without touching /etc/hosts" in msg
    assert ".lab.test" in msg and "localhost" in msg
    assert listening_ports() == before


@pytest.mark.parametrize("entry, why", [
    ("https://localhost:8443/", "trailing slash"),
    ("https://localhost:8443/chat", "no path"),
    ("ftp://localhost:8443", "scheme must be http or https"),
    ("https://localhost:99999", "out of range"),
])
def test_invalid_origin_in_an_allow_list(entry: str, why: str) -> None:
    before = listening_ports()
    for topo in (lambda: messenger(cors=CorsPolicy("allowlist", (entry,))),
                 lambda: messenger(chat_origins=(entry,))):
        with pytest.raises(InvalidOriginError) as err:
            Lab(topo()).start()
        msg = str(err.value)
        assert f"'{entry}' is not a valid origin" in msg
        assert why in msg
        assert "scheme://host[:port]" in msg
    assert listening_ports() == before


def test_an_allow_list_entry_that_is_neither_origin_nor_service() -> None:
    with pytest.raises(TopologyError, match="allow-list of 'chat' holds 'webb', which is neither "
                                            "an origin nor a service name. Write an origin"):
        Lab(messenger(chat_origins=("webb",)))


def test_unknown_scenario_lists_the_known_ones() -> None:
    from labkit.model import scenarios

    with pytest.raises(UnknownScenarioError) as err:
        scenarios.get("nope")
    msg = str(err.value)
    assert msg.startswith("unknown scenario 'nope'. Known scenarios: ")
    assert err.value.known, "the error must list at least one real scenario"
    for name in err.value.known:
        assert name in msg
        scenarios.get(name)  # every name it suggests really exists


def test_missing_ca_file_names_the_path(fresh_home: Path) -> None:
    pki = LabPKI().ensure()
    pki.ca_pem.unlink()
    with pytest.raises(CAFileMissingError) as err:
        pki.client_context()
    msg = str(err.value)
    assert str(fresh_home / "pki" / "ca.pem") in msg
    assert "is missing" in msg and "labkit doctor" in msg and "LABKIT_HOME" in msg


def test_service_lookups_explain_themselves(lab: Lab) -> None:
    with pytest.raises(TopologyError, match="topology 'messenger' has no service named 'nope'. "
                                            "Its services are: web, api, chat."):
        lab.url("nope")
    lab.stop()
    with pytest.raises(LabNotRunningError, match="cannot look up service 'web': the lab is not "
                                                 r"running. Call lab.start\(\) first."):
        lab.url("web")


@pytest.mark.parametrize("ports, text", [
    ({"nope": 9000}, "has no service named 'nope'"),
    ({"web": 80}, "port 80 of service 'web' is privileged"),
    ({"web": 70000}, "port 70000 of service 'web' is out of range"),
    ({"web": 9000, "api": 9000}, "services 'web' and 'api' both ask for port 9000"),
])
def test_bad_fixed_ports(ports: dict[str, int], text: str) -> None:
    with pytest.raises(TopologyError, match=text):
        Lab(ports=ports)


# -- display -------------------------------------------------------------------------------------
def test_repr_and_html_show_the_urls(lab: Lab) -> None:
    text, page = repr(lab), lab_html(lab)
    assert text.startswith("<Lab 'messenger' running: ")
    for svc in lab.services:
        assert svc.url in text
        assert f"<code>{svc.url}</code>" in page
    assert lab.url("chat").startswith("wss://localhost:") and lab.url("chat").endswith("/ws")
    assert str(lab.pki.ca_pem) in page
    lab.stop()
    assert repr(lab) == "<Lab 'messenger' stopped>"
    assert "https://" not in lab_html(lab)
