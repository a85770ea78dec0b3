"""The notebook's views: the lower floors' types get their HTML from labkit.notebook.display,
registered with IPython on ``import labkit``; outside IPython nothing is registered or imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from labkit import scenario
from labkit.model.explain import explain
from labkit.notebook import display

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, tmp_path: Path) -> dict[str, object]:
    env = {**os.environ, "IPYTHONDIR": str(tmp_path)}  # the shell's history stays out of ~
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, check=True, env=env)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_importing_labkit_in_ipython_registers_the_views(tmp_path: Path) -> None:
    state = _python(
        "import json\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "import labkit\n"
        "from labkit.notebook import display\n"
        "sc = labkit.scenario('cors-port-mismatch')\n"
        "data, _ = shell.display_formatter.format(sc)\n"
        "fmt = shell.display_formatter.formatters['text/html']\n"
        "print(json.dumps({'html': data.get('text/html'), 'want': display.scenario_html(sc),\n"
        "    'registered': [fmt.lookup_by_type(c) is f for c, f in display.FORMATTERS.items()],\n"
        "    'again': display.register()}))\n", tmp_path)
    assert state["html"] == state["want"]
    assert state["registered"] == [True] * len(display.FORMATTERS)
    assert state["again"] is True  # idempotent


def test_outside_ipython_nothing_is_registered_nor_imported(tmp_path: Path) -> None:
    state = _python(
        "import json, sys\n"
        "import labkit\n"
        "from labkit.notebook import display\n"
        "print(json.dumps({'ipython': 'IPython' in sys.modules, 'reg': display.register()}))\n",
        tmp_path)
    assert state == {"ipython": False, "reg": False}


def test_the_lower_floors_have_their_views() -> None:
    sc = scenario("cors-port-mismatch")
    assert display.scenario_html(sc).startswith("<b>cors-port-mismatch</b> — expected <b>blocked")
    e = explain(sc)
    assert display.explanation_html(e) == "<pre>" + display.esc(e) + "</pre>"
    assert not hasattr(sc, "_repr_html_") and not hasattr(e, "_repr_html_")


def test_tables_escape_text_and_align_numbers() -> None:
    html = display.text_table(["", "a<b"], [["x", "1"]], numeric=True)
    assert html == ("<table><tr><th></th><th>a&lt;b</th></tr>"
                    "<tr><td>x</td><td style='text-align:right'>1</td></tr></table>")
    assert display.good_or_bad(True) == display.STATE_COLOURS["ok"]
    assert display.good_or_bad(False) == display.STATE_COLOURS["blocked"]
