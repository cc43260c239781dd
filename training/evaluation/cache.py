"""Unit cache of the evaluation: every unit of work (method × cell × chunk of slices) is stored as
`DIR/<hash>.npz` (arrays) + `DIR/<hash>.json` (the key), keyed by everything that determines it, so an
interrupted run continues where it stopped. Delete DIR to recompute; do not commit it."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from recon_core.io_utils import atomic_path, write_text_atomic


def key_of(d: dict) -> str:
    """A short stable hash of a JSON-able dict."""
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:20]


class UnitCache:
    def __init__(self, directory: str, version: int):
        self.dir = directory
        self.version = int(version)
        os.makedirs(directory, exist_ok=True)

    def get(self, key: dict, compute) -> dict:
        """The cached arrays for `key`, or compute() (a dict of arrays), stored atomically, then returned."""
        key = {**key, "cache_version": self.version}
        path = os.path.join(self.dir, key_of(key) + ".npz")
        if os.path.exists(path):
            try:
                with np.load(path, allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}
            except (OSError, ValueError):
                os.unlink(path)
        res = compute()
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **res)
        write_text_atomic(path[:-4] + ".json", json.dumps(key, default=str))
        return res
