"""Scanner simulator: a digital brain (MNI152), contrast physics, pathology, coils/noise and ISMRMRD output.

Public API: `simulate_scan`, `SimulatedScan`, `write_scan`, `read_scan` (scan.py);
`simulate_dataset`, `load_split`, `SplitData` (export.py).
"""

from .export import SplitData, load_split, simulate_dataset
from .scan import SimulatedScan, read_scan, simulate_scan, write_scan

__all__ = ["simulate_scan", "SimulatedScan", "write_scan", "read_scan", "simulate_dataset", "load_split",
           "SplitData"]
