"""The one prior cache: loads once per (model, device) even under concurrent first use; per-instance."""

from __future__ import annotations

import threading
import time

import pytest

from recon_core.errors import InputError
from recon_core.prior.cache import PriorCache


def test_concurrent_first_use_loads_once():
    calls = []

    def loader(name, device):
        calls.append(name)
        time.sleep(0.05)
        return object()

    cache = PriorCache(loader=loader)
    out = []
    threads = [threading.Thread(target=lambda: out.append(cache.get("m", "cpu"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["m"] and len({id(o) for o in out}) == 1 and len(cache) == 1
    cache.get("other", "cpu")
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0


def test_real_models_by_path(tmp_path):
    from recon_core.prior import build_prior

    build_prior("tiny").save_pretrained(tmp_path / "m")
    cache = PriorCache()
    a = cache.get(str(tmp_path / "m"), "cpu")
    assert cache.get(str(tmp_path / "m") + "/", "cpu") is a and not a.training   # same resolved path, eval mode
    with pytest.raises(InputError):
        cache.get(str(tmp_path / "missing"), "cpu")
