"""How often ``labkit.explain`` agrees with the real browser, on configurations nobody listed.

Draws configurations with the strategy of tests/configs.py (a fixed seed: the same sample every
run) until it has ``--n`` distinct ones, then explains each, starts it and visits it in one shared
headless Chromium (``labkit.notebook.runner.check``). Prints a line per configuration on
stderr, then how
many agree, the time per configuration, every disagreement in full, grouped classes of them, and
any exception labkit raised for a configuration its validator accepted. Runs in a throwaway
LABKIT_HOME. Exits 1 if anything disagreed or crashed.

    .venv/bin/python bench/explain_vs_browser.py [--n 150] [--seed 1] [--json FILE] [--shapes wild]
                                                 [--browser chromium|firefox]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def _collect(examples: int, seed: int, shapes: tuple[str, ...] | None
             ) -> tuple[dict[str, Any], Counter[str]]:
    """Run the strategy for ``examples`` examples from ``seed``: configurations by key, in draw
    order, and what the strategy counted meanwhile."""
    import configs
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    found: dict[str, Any] = {}
    before = configs.STATS.copy()

    @hseed(seed)
    @settings(max_examples=examples, database=None, derandomize=False, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(configs.configs(shapes))
    def collect(cfg: Any) -> None:
        found.setdefault(cfg.key(), cfg)

    collect()
    stats = configs.STATS.copy()
    stats.subtract(before)
    return found, stats


def draw(n: int, seed: int, shapes: tuple[str, ...] | None = None
         ) -> tuple[list[Any], dict[str, Any]]:
    """At least ``n`` distinct accepted configurations, the same ones for the same seed (draw
    order, then a seeded sample so the early, simplest draws do not dominate)."""
    import configs

    budget = max(3 * n, n + 100)
    found, stats = _collect(budget, seed, shapes)
    while len(found) < n and budget < 64 * n:
        budget *= 2
        found, stats = _collect(budget, seed, shapes)
    keys = list(found)
    picked = sorted(random.Random(seed).sample(range(len(keys)), min(n, len(keys))))
    drawn = stats["accepted"] + stats["rejected"] + stats["crashed"]
    info = {
        "examples": budget,
        "drawn": drawn,
        "accepted": stats["accepted"],
        "rejected": stats["rejected"],
        "validator_crashes": stats["crashed"],
        "rejection_rate": (stats["rejected"] + stats["crashed"]) / drawn if drawn else 0.0,
        "distinct": len(found),
        "rejected_why": {k[len("rejected: "):]: v for k, v in stats.most_common()
                         if k.startswith("rejected: ") and v},
        "crashes": [{"config": k, "traceback": tb} for k, tb in configs.CRASHES],
    }
    return [found[keys[i]] for i in picked], info


def _pred(e: Any) -> str:
    return f"{e.outcome}({e.reason})" if e.reason else e.outcome


def _where(tb: traceback.StackSummary) -> str:
    """The innermost labkit frame of a traceback: which part of labkit raised."""
    frames = [f for f in tb if "/labkit/" in f.filename]
    f = (frames or list(tb))[-1]
    return f"{Path(f.filename).name}:{f.lineno} in {f.name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--browser", choices=["chromium", "firefox"], default="chromium",
                        help="which browser looks (default: %(default)s)")
    parser.add_argument("--n", type=int, default=150, help="distinct configurations to run")
    parser.add_argument("--seed", type=int, default=1, help="hypothesis seed of the sample")
    parser.add_argument("--json", type=Path, help="write the summary and disagreements here")
    parser.add_argument("--shapes", help="only these shapes of tests/configs.py, comma-separated "
                        "(trio, hijack, proxied, lb, sio, wild); default all")
    args = parser.parse_args(argv)

    home = tempfile.mkdtemp(prefix="labkit-bench-")
    os.environ["LABKIT_HOME"] = home  # before labkit reads it: the lab CA goes here
    try:
        return run(args)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    import configs

    from labkit import LabError, PortInUseError, system
    from labkit.notebook import runner
    from labkit.observe import make_browser

    found = system.find_firefox() if args.browser == "firefox" else system.find_browser()
    if found is None:
        print(f"no {args.browser} found; install it with: "
              f"{system.install_command([args.browser])}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    shapes = tuple(args.shapes.split(",")) if args.shapes else None
    unknown = set(shapes or ()) - set(configs.SHAPES)
    if unknown:
        print(f"unknown shapes {sorted(unknown)}; shapes are {', '.join(configs.SHAPES)}",
              file=sys.stderr)
        return 2
    sample, info = draw(args.n, args.seed, shapes)
    draw_seconds = time.perf_counter() - t0
    print(f"drew {info['distinct']} distinct configurations in {info['examples']} examples "
          f"({info['drawn']} draws, {info['rejection_rate']:.0%} rejected) in "
          f"{draw_seconds:.1f}s; running {len(sample)}", file=sys.stderr)

    rows: list[dict[str, Any]] = []
    disagreements: list[tuple[Any, Any]] = []
    errors: list[dict[str, Any]] = []
    browser = make_browser(args.browser).start()
    version = f"{browser.label} {browser.version}"
    try:
        for i, cfg in enumerate(sample, 1):
            key = cfg.key()
            t = time.perf_counter()
            try:
                try:
                    a = runner.check(cfg.topology, cfg.visit, cfg.before, browser=browser)
                except PortInUseError:  # a fixed port held for a moment by another socket
                    time.sleep(0.5)
                    a = runner.check(cfg.topology, cfg.visit, cfg.before, browser=browser)
            except Exception as e:  # a crash, or a LabError for an accepted configuration
                secs = time.perf_counter() - t
                tb = traceback.extract_tb(e.__traceback__)
                err = {"config": key, "shape": cfg.shape,
                       "error": f"{type(e).__name__}: {e}",
                       "lab_error": isinstance(e, LabError), "where": _where(tb),
                       "traceback": "".join(traceback.format_exception(e))}
                errors.append(err)
                rows.append({"config": key, "shape": cfg.shape, "seconds": secs,
                             "result": "error"})
                print(f"[{i}/{len(sample)}] {key[:70]:70}  ERROR {err['error'][:80]} "
                      f"{secs:.1f}s", file=sys.stderr)
                continue
            secs = time.perf_counter() - t
            mark = "agree" if a.ok else "DISAGREE"
            rows.append({"config": key, "shape": cfg.shape, "seconds": secs,
                         "result": mark.lower(), "explain": _pred(a.explanation),
                         "browser": str(a.verdict)})
            if not a.ok:
                disagreements.append((cfg, a))
            print(f"[{i}/{len(sample)}] {key[:70]:70}  explain={_pred(a.explanation)} "
                  f"browser={a.verdict.outcome}"
                  + (f"({a.verdict.reason})" if a.verdict.reason else "")
                  + f" {mark} {secs:.1f}s", file=sys.stderr)
    finally:
        browser.stop()

    total = len(rows)
    agreeing = sum(r["result"] == "agree" for r in rows)
    times = [r["seconds"] for r in rows]
    classes = Counter(
        f"[{cfg.shape}] explain {_pred(a.explanation)} / browser {a.verdict}"
        for cfg, a in disagreements)
    print()
    print(f"browser: {version}")
    print(f"agree: {agreeing}/{total} ({agreeing / total:.0%})" if total else "nothing ran")
    print(f"disagree: {len(disagreements)}; errors: {len(errors)}")
    if times:
        print(f"time per configuration: mean {statistics.mean(times):.2f}s, median "
              f"{statistics.median(times):.2f}s, max {max(times):.1f}s; total {sum(times):.0f}s "
              f"(+ {draw_seconds:.1f}s drawing)")
    print(f"draws: {info['drawn']}, rejected {info['rejected']} "
          f"({info['rejection_rate']:.0%}), distinct accepted {info['distinct']}")
    for why, n in info["rejected_why"].items():
        print(f"  rejected {n}x: {why}")
    if classes:
        print("\ndisagreement classes:")
        for c, n in classes.most_common():
            print(f"  {n:3}x {c}")
    for j, (cfg, a) in enumerate(disagreements, 1):
        print(f"\n--- disagreement {j}/{len(disagreements)} ---")
        print(configs.describe(cfg, a))
    for j, err in enumerate(errors, 1):
        print(f"\n--- error {j}/{len(errors)} ({'LabError' if err['lab_error'] else 'crash'} "
              f"at {err['where']}) ---")
        print(f"config [{err['shape']}]: {err['config']}")
        print(err["traceback"])
    for k, tb in configs.CRASHES:
        print(f"\n--- validator crash ---\nconfig: {k}\n{tb}")

    if args.json:
        doc = {
            "browser": version, "seed": args.seed, "n": args.n, "shapes": shapes,
            "total": total,
            "agree": agreeing, "disagree": len(disagreements), "errors": len(errors),
            "agree_rate": agreeing / total if total else None,
            "seconds_mean": statistics.mean(times) if times else None,
            "seconds_median": statistics.median(times) if times else None,
            "draw": info,
            "classes": dict(classes.most_common()),
            "rows": rows,
            "disagreements": [_as_dict(cfg, a) for cfg, a in disagreements],
            "exceptions": errors,
        }
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    return 1 if disagreements or errors or configs.CRASHES else 0


def _as_dict(cfg: Any, a: Any) -> dict[str, Any]:
    import configs

    obs = a.observation
    return {
        "config": cfg.key(), "shape": cfg.shape, "visit": cfg.visit, "before": cfg.before,
        "problems": a.problems,
        "explain": {"outcome": a.explanation.outcome, "reason": a.explanation.reason,
                    "text": str(a.explanation)},
        "browser": {"outcome": a.verdict.outcome, "reason": a.verdict.reason,
                    "evidence": a.verdict.evidence},
        "steps": {k: {"state": s.state, "detail": s.detail} for k, s in obs.steps.items()},
        "before_steps": [{k: s.state for k, s in b.items()} for b in obs.before],
        "navigation_error": obs.navigation_error,
        "console": obs.messages(),
        "page_errors": [f"{e.name}: {e.message}" for e in obs.page_errors],
        "report": configs.describe(cfg, a),
    }


if __name__ == "__main__":
    sys.exit(main())
