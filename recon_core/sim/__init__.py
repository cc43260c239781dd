"""Scanner simulator: a digital brain (MNI152), contrast physics, pathology, coils/noise and ISMRMRD output.

Public API: `simulate_scan`, `SimulatedScan`, `write_scan`, `read_scan` (scan.py);
`simulate_dataset`, `load_split`, `SplitData` (export.py). Imports are lazy to keep the CLI light.
"""

__all__ = ["simulate_scan", "SimulatedScan", "write_scan", "read_scan", "simulate_dataset", "load_split",
           "SplitData"]


def __getattr__(name):
    if name in ("simulate_scan", "SimulatedScan", "write_scan", "read_scan"):
        from . import scan
        return getattr(scan, name)
    if name in ("simulate_dataset", "load_split", "SplitData"):
        from . import export
        return getattr(export, name)
    raise AttributeError(name)
