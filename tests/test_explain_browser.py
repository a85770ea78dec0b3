"""``labkit.explain`` against the real browser, on configurations nobody listed.

Hypothesis draws whole lab configurations (tests/configs.py); each is explained, then started and
visited in the session's Chromium, and the prediction must match what the browser showed (outcome
and reason, and the chat session when explain names one). No shrinking: every example costs a lab
start and a browser visit. ``LABKIT_EXPLAIN_EXAMPLES`` sets how many configurations (default 25);
bench/explain_vs_browser.py runs a bigger sample and lists every disagreement.
"""

from __future__ import annotations

import os
import time
from typing import Any

import configs
import pytest
from configs import Config
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("LABKIT_EXPLAIN_EXAMPLES", "25"))
_NO_SLOW = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]

#: Agreements by config key: a configuration drawn twice is visited once (hypothesis maps many
#: choice sequences to one configuration), and a failing one replays without another visit.
_DONE: dict[str, Any] = {}


def _check(cfg: Config, browser: Any) -> Any:
    from labkit import PortInUseError
    from labkit.notebook import runner

    try:
        return runner.check(cfg.topology, cfg.visit, cfg.before, browser=browser)
    except PortInUseError:  # a fixed port taken by someone else's socket for a moment
        time.sleep(0.5)
        return runner.check(cfg.topology, cfg.visit, cfg.before, browser=browser)


@pytest.mark.browser
@pytest.mark.timeout(max(600, 20 * EXAMPLES))
@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=_NO_SLOW, phases=[Phase.explicit, Phase.generate])
@given(cfg=configs.configs())
def test_explain_agrees_with_the_browser(cfg: Config, browser: Any) -> None:
    key = cfg.key()
    agreement = _DONE.get(key)
    if agreement is not None and agreement.ok:
        reject()  # seen and agreed: draw another configuration instead of visiting it again
    if agreement is None:
        agreement = _DONE[key] = _check(cfg, browser)
    assert agreement.ok, "explain and the browser disagree\n" + configs.describe(cfg, agreement)


#: Firefox visits run one at a time (HSTS is browser-wide there): a smaller sample in every run;
#: bench/explain_vs_browser.py --browser firefox runs a bigger one.
FIREFOX_EXAMPLES = int(os.environ.get("LABKIT_EXPLAIN_FIREFOX_EXAMPLES", "12"))
_DONE_FIREFOX: dict[str, Any] = {}


@pytest.mark.firefox
@pytest.mark.timeout(max(600, 20 * FIREFOX_EXAMPLES))
@settings(max_examples=FIREFOX_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=_NO_SLOW, phases=[Phase.explicit, Phase.generate])
@given(cfg=configs.configs())
def test_explain_agrees_with_firefox(cfg: Config, firefox: Any) -> None:
    """The same model, the other browser: the rules explain follows are the specs', not one
    browser's habits."""
    key = cfg.key()
    agreement = _DONE_FIREFOX.get(key)
    if agreement is not None and agreement.ok:
        reject()
    if agreement is None:
        agreement = _DONE_FIREFOX[key] = _check(cfg, firefox)
    assert agreement.ok, "explain and Firefox disagree\n" + configs.describe(cfg, agreement)


def test_strategy_draws_many_distinct_accepted_configs() -> None:
    """Pure and quick: the strategy reaches well over a hundred distinct configurations the
    validator accepts, rejects under half of its draws, and the validator never crashes."""
    keys: set[str] = set()
    shapes: set[str] = set()
    before = configs.STATS.copy()
    crashes = len(configs.CRASHES)

    @settings(max_examples=400, derandomize=True, database=None, deadline=None,
              suppress_health_check=_NO_SLOW, phases=[Phase.generate])
    @given(cfg=configs.configs())
    def collect(cfg: Config) -> None:
        keys.add(cfg.key())
        shapes.add(cfg.shape)

    t0 = time.perf_counter()
    collect()
    seconds = time.perf_counter() - t0
    stats = configs.STATS.copy()
    stats.subtract(before)
    drawn = stats["accepted"] + stats["rejected"] + stats["crashed"]
    why = "\n".join(f"  {n} {k}" for k, n in stats.most_common() if k.startswith("rejected: "))
    assert not configs.CRASHES[crashes:], "the validator crashed:\n" + "\n".join(
        f"{k}\n{tb}" for k, tb in configs.CRASHES[crashes:])
    assert len(keys) >= 150, f"only {len(keys)} distinct configurations in 400 examples"
    assert shapes == set(configs.SHAPES), f"shapes never drawn: {set(configs.SHAPES) - shapes}"
    assert stats["rejected"] < 0.5 * drawn, (
        f"{stats['rejected']} of {drawn} draws rejected by the validator:\n{why}")
    assert seconds < 60, f"drawing took {seconds:.1f}s"


@given(st.data())
@settings(max_examples=30, derandomize=True, database=None, deadline=None,
          suppress_health_check=_NO_SLOW)
def test_config_key_is_stable(data: st.DataObject) -> None:
    """The key is a function of the configuration: rebuilt equal, it prints equal."""
    cfg = data.draw(configs.configs())
    copy = Config(cfg.topology, cfg.visit, tuple(cfg.before), cfg.shape)
    assert copy == cfg and copy.key() == cfg.key()
    assert cfg.visit in cfg.key()
