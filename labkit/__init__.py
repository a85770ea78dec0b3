"""labkit — break and fix a real WebSocket deployment, in Jupyter.

Importing labkit starts nothing: no thread, no socket, no browser.

    lab = labkit.Lab().start()        # the messenger: web, api, chat on loopback, TLS on
    labkit.run("cors-port-mismatch")  # a scenario, observed in a real Chromium
"""

from .errors import (
    AssetMissingError,
    BrowserDriverError,
    BrowserMissingError,
    BrowserStartError,
    CAFileMissingError,
    FirefoxProtocolError,
    GuessError,
    InvalidOriginError,
    LabError,
    LabNotRunningError,
    NginxMissingError,
    NginxStartError,
    PortInUseError,
    TopologyError,
    UnknownHostError,
    UnknownScenarioError,
    UnsafeFolderError,
    UpstreamAddressError,
    UpstreamCAMissingError,
    VisitInterruptedError,
)
from .lab import Lab, stop_all
from .model.cors import CorsPolicy
from .model.routing import STORY_ROUTES, Route
from .model.topology import Page, Service, Topology, messenger
from .notebook.exercises import exercise
from .notebook.predict import guesses
from .notebook.session import compare, diagram, doctor, explain, reset, run, scenario, tour
from .notebook.triage import triage
from .notebook.wire import capture
from .observe.browser import Browser
from .observe.firefox import Firefox
from .observe.observation import Observation
from .serve.pki import LabPKI

__version__ = "0.1.0"

__all__ = [
    "STORY_ROUTES",
    "AssetMissingError",
    "Browser",
    "BrowserDriverError",
    "BrowserMissingError",
    "BrowserStartError",
    "CAFileMissingError",
    "CorsPolicy",
    "Firefox",
    "FirefoxProtocolError",
    "GuessError",
    "InvalidOriginError",
    "Lab",
    "LabError",
    "LabNotRunningError",
    "LabPKI",
    "NginxMissingError",
    "NginxStartError",
    "Observation",
    "Page",
    "PortInUseError",
    "Route",
    "Service",
    "Topology",
    "TopologyError",
    "UnknownHostError",
    "UnknownScenarioError",
    "UnsafeFolderError",
    "UpstreamAddressError",
    "UpstreamCAMissingError",
    "VisitInterruptedError",
    "__version__",
    "capture",
    "compare",
    "diagram",
    "doctor",
    "exercise",
    "explain",
    "guesses",
    "messenger",
    "reset",
    "run",
    "scenario",
    "stop_all",
    "tour",
    "triage",
]
