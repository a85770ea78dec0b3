"""labkit — break and fix a real WebSocket deployment, in Jupyter.

Importing labkit starts nothing: no thread, no socket, no browser.
"""

from .apps.cors import CorsPolicy
from .errors import (
    CAFileMissingError,
    InvalidOriginError,
    LabError,
    LabNotRunningError,
    PortInUseError,
    TopologyError,
    UnknownHostError,
    UnknownScenarioError,
)
from .lab import Lab, stop_all
from .pki import LabPKI
from .topology import Page, Service, Topology, messenger

__version__ = "0.1.0"

__all__ = [
    "CAFileMissingError",
    "CorsPolicy",
    "InvalidOriginError",
    "Lab",
    "LabError",
    "LabNotRunningError",
    "LabPKI",
    "Page",
    "PortInUseError",
    "Service",
    "Topology",
    "TopologyError",
    "UnknownHostError",
    "UnknownScenarioError",
    "__version__",
    "messenger",
    "stop_all",
]
