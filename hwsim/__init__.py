"""hwsim: a hardware simulator and cost model for serving Mixture-of-Experts LLMs.

>>> import hwsim
>>> cluster = hwsim.load_cluster("4x-DGX-H100")
>>> cluster.num_devices
32
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_cluster", "load_device", "load_model", "load_node", "load_scenario"]

_LAZY = {
    "load_cluster": "hwsim.io.load",
    "load_device": "hwsim.io.load",
    "load_model": "hwsim.io.load",
    "load_node": "hwsim.io.load",
    "load_scenario": "hwsim.io.scenario",
}


def __getattr__(name: str) -> Any:
    # The public loaders are imported on first use, so `import hwsim` stays light.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hwsim' has no attribute {name!r}")
