"""What the deployments cost: the counting and summarising decisions (no I/O, milliseconds), and one
run of ``costs.compare()`` in the real browser for the facts that must hold whatever the machine."""

from __future__ import annotations

import time

import pytest

from labkit.model.topology import Page, Service, Topology
from labkit.notebook import costs
from labkit.notebook.costs import CostReport, Visit

TOPOLOGIES = {name: topo for name, (topo, _) in costs.deployments().items()}


def visit(handshakes: dict[str, int], chat_ms: float | None = 200.0,
          urls: tuple[str, ...] = ("https://app.lab.test:4000/",)) -> Visit:
    steps = {"hello": ("ok", 50.0)}
    if chat_ms is not None:
        steps["chat"] = ("ok", chat_ms)
    else:
        steps["chat"] = ("error", 5000.0)
    return Visit(handshakes, steps, urls, "allowed")


# -- counting, from the topology -----------------------------------------------------------------
@pytest.mark.parametrize(("name", "listeners", "processes"), [
    ("direct", 3, 3),
    # web, api, chat, the proxy; its redirect listener runs inside the proxy.
    ("reverse proxy", 5, 4),
    # web, api, chat and one load balancer each for the API and chat, each with its redirect.
    ("load balancers", 7, 5),
])
def test_listeners_and_processes(name: str, listeners: int, processes: int) -> None:
    topo = TOPOLOGIES[name]
    assert costs.count_listeners(topo) == listeners
    assert costs.count_processes(topo) == processes


def test_a_redirect_listener_adds_a_listener_not_a_process() -> None:
    page = Page(api=None, ws=None, steps=())
    alone = Topology("t", (Service("web", "web"),), page=page)
    redirected = Topology("t", (Service("web", "web"),
                                Service("r", "redirect", tls=False, target="web")), page=page)
    assert (costs.count_listeners(alone), costs.count_processes(alone)) == (1, 1)
    assert (costs.count_listeners(redirected), costs.count_processes(redirected)) == (2, 1)


def test_the_api_needs_cors_only_where_the_page_calls_another_origin() -> None:
    assert costs.api_cors(TOPOLOGIES["direct"]) == "allowlist"
    assert costs.api_cors(TOPOLOGIES["load balancers"]) == "allowlist"
    assert costs.api_cors(TOPOLOGIES["reverse proxy"]) == "none"


# -- counting, from what the browser did ---------------------------------------------------------
def test_entry_points_are_the_tls_listeners_the_urls_reached() -> None:
    tls = {4000: "web", 4001: "lb-api", 4002: "lb-ws", 443: "edge"}
    urls = [
        "https://app.lab.test:4000/", "https://app.lab.test:4000/app.js",
        "https://api.lab.test:4001/api/hello",
        "wss://ws.lab.test:4002/",
        "http://app.lab.test:4003/",  # the plain redirect listener is not a TLS entry point
        "https://other.lab.test:5000/",  # not a listener of this lab
    ]
    assert costs.entry_points(urls, tls) == ("lb-api", "lb-ws", "web")
    assert costs.entry_points(["https://edge.lab.test/"], tls) == ("edge",)  # default port
    assert costs.entry_points([], tls) == ()


def test_a_socket_on_the_pages_origin_is_not_another_origin() -> None:
    same = ["https://app.lab.test:4000/", "wss://app.lab.test:4000/ws",
            "https://app.lab.test:4000/api/rooms"]
    assert costs.origins(same) == ("https://app.lab.test:4000",)
    # Same host, other port: another origin (the story's CORS lesson).
    assert len(costs.origins(["https://localhost:1/", "https://localhost:2/api"])) == 2
    assert costs.origins(["https://localhost/", "https://localhost:443/"]) == (
        "https://localhost:443",)


def test_one_certificate_on_several_ports_counts_once() -> None:
    assert costs.distinct_certificates({"web": "aa", "api": "aa", "chat": "aa"}) == 1
    assert costs.distinct_certificates({"web": "aa", "lb-api": "bb", "lb-ws": "cc"}) == 3
    assert costs.distinct_certificates({}) == 0


def test_handshakes_between_two_snapshots() -> None:
    before = {"web": 4, "api": 2}
    after = {"web": 5, "api": 2, "chat": 1}
    assert costs.handshakes_between(before, after) == {"chat": 1, "web": 1}
    assert costs.handshakes_between(after, after) == {}


def test_median_ignores_failed_measurements() -> None:
    assert costs.median([3.0, None, 1.0, 2.0]) == 2.0
    assert costs.median([None, None]) is None
    assert costs.median([]) is None


def test_the_first_message_is_the_chat_step_turning_ok() -> None:
    assert visit({}, chat_ms=321.0).first_message_ms == 321.0
    assert visit({}, chat_ms=None).first_message_ms is None  # the step failed
    assert Visit({}, {"hello": ("ok", 5.0)}, (), "allowed").first_message_ms is None  # no chat


# -- summarising ---------------------------------------------------------------------------------
def lb_summary(**kw: object) -> costs.DeploymentCost:
    urls = ("https://app.lab.test:4000/", "https://api.lab.test:4001/api/hello",
            "wss://ws.lab.test:4002/")
    visits = [visit({"web": 1, "lb-api": 1, "lb-ws": 1}, 300.0, urls),
              visit({"web": 2, "lb-api": 1, "lb-ws": 1}, 100.0, urls),
              visit({"web": 1, "lb-api": 1, "lb-ws": 1}, None, urls)]
    prints = {"web": "aa", "lb-api": "bb", "lb-ws": "cc"}
    tls = {4000: "web", 4001: "lb-api", 4002: "lb-ws"}
    return costs.summarise("load balancers", TOPOLOGIES["load balancers"], visits, prints, tls,
                           **kw)  # type: ignore[arg-type]


def test_summarise_takes_medians_and_counts_failures() -> None:
    d = lb_summary(memory=[{"total_mib": 0.2, "child_mib": 0.0, "process_mib": 50.0},
                           {"total_mib": 0.4, "child_mib": 0.0, "process_mib": 52.0}])
    assert d.entry_points == ("lb-api", "lb-ws", "web")
    assert (d.n_entry_points, d.certificates, d.origins) == (3, 3, 3)
    assert (d.listeners, d.processes, d.cors) == (7, 5, "allowlist")
    assert d.handshakes == 3  # per-visit totals 3, 4, 3
    assert d.handshakes_by_listener == {"lb-api": 1, "lb-ws": 1, "web": 1}
    assert d.first_message_samples == (300.0, 100.0, None)
    assert d.first_message_ms == 200.0  # the failed visit is counted apart, not as a time
    assert (d.visits, d.failed) == (3, 1)
    assert d.memory_mib == pytest.approx(0.3)
    assert d.process_mib == 51.0
    assert d.steps_ms["hello"] == 50.0


def test_handshakes_at_a_listener_nobody_counts_are_unknown_not_zero() -> None:
    assert lb_summary(uncounted=["lb-ws"]).handshakes is None
    assert lb_summary(uncounted=["not-reached"]).handshakes == 3
    assert lb_summary().memory_mib is None  # not measured


def test_ratios_divide_numbers_and_skip_words() -> None:
    lb = lb_summary()
    rp = costs.DeploymentCost(
        name="reverse proxy", topology="t", entry_points=("proxy",), listeners=5, processes=4,
        certificates=1, origins=1, cors="none", handshakes=2.0, handshakes_by_listener={},
        first_message_ms=None, first_message_samples=(), steps_ms={}, memory_mib=0.0,
        external_mib=0.0, process_mib=None, visits=0, failed=0)
    r = costs.ratios(lb, rp)
    assert (r["entry_points"], r["certificates"], r["handshakes"]) == (3, 3, 1.5)
    assert r["processes"] == pytest.approx(5 / 4)
    assert r["first_message_ms"] is None  # missing on one side
    assert r["memory_mib"] is None  # divided by zero
    assert "cors" not in r


def test_the_report_reads_as_a_table_everywhere() -> None:
    report = CostReport((lb_summary(),), rounds=3, browser_version="156.0",
                        notes=("a note",))
    text = repr(report)
    assert "load balancers" in text and "TLS entry points the browser reaches" in text
    assert "3 page sessions" in text and "note: a note" in text
    html = report._repr_html_()
    assert html.count("<tr>") == 1 + len(costs.METRICS)
    assert "<th>load balancers</th>" in html
    [row] = report.rows()
    assert row["deployment"] == "load balancers" and row["entry_points"] == 3
    assert row["steps_ms"]["chat"] == 200.0
    with pytest.raises(KeyError, match="measured: load balancers"):
        report["direct"]


# -- the real browser ----------------------------------------------------------------------------
@pytest.mark.browser
def test_the_costs_measured_in_the_browser(browser: object) -> None:
    t = time.monotonic()
    report = costs.compare(browser, rounds=1, warmup=0, memory=1)  # type: ignore[arg-type]
    took = time.monotonic() - t
    direct, rp, lb = report["direct"], report["reverse proxy"], report["load balancers"]
    assert all(d.failed == 0 for d in report.deployments), report
    # The long-term fix: one origin, one entry point, one certificate, no CORS.
    assert (rp.n_entry_points, rp.certificates, rp.origins, rp.cors) == (1, 1, 1, "none")
    # The short-term fix works, at a cost: more entry points and certificates, CORS still needed.
    assert lb.n_entry_points > rp.n_entry_points
    assert lb.certificates > rp.certificates
    assert lb.cors != "none" and lb.origins > 1
    # The starting point: three ports are three origins, so the API needs CORS.
    assert direct.cors != "none" and direct.origins == 3
    # Every entry point was reached over TLS, so each costs at least one real handshake.
    for d in report.deployments:
        assert d.handshakes is not None and d.handshakes >= d.n_entry_points, d
        assert set(d.handshakes_by_listener) == set(d.entry_points), d
        assert d.first_message_ms is not None and d.first_message_ms > 0
        assert d.memory_mib is not None
    assert took < 30, f"compare() with one round took {took:.1f} s"
