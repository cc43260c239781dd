"""OpenVINO's per-layer profile of the shipped prior's UNet (one batch-2 forward, as DDS's CFG pair runs it) at 128²
and 256², grouped by layer type: where the 256² network's > 4× cost comes from (issue 23).

    python results/speed/openvino_profile.py [--threads 2] [--reps 5]
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np
import openvino as ov
import torch

from recon_core.prior.cache import get_prior
from recon_core.prior.engine import export_onnx


def profile(core, path, tok, n, threads, reps):
    model = core.read_model(path)
    model.reshape({"x": [2, 2, n, n], "t": [2], "tokens": list(tok.shape)})
    cm = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": threads,
                                           "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True})
    req = cm.create_infer_request()
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 2, n, n)).astype(np.float32),
             "t": np.array([500, 500]), "tokens": tok}
    for _ in range(2):
        req.infer(feeds)
    by_type, walls = collections.Counter(), []
    for _ in range(reps):
        t0 = time.perf_counter()
        req.infer(feeds)
        walls.append(time.perf_counter() - t0)
        for pi in req.profiling_info:
            by_type[pi.node_type] += pi.real_time.total_seconds() * 1e3 / reps
    return float(np.median(walls)) * 1e3, by_type


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    prior = get_prior("default", "cpu")
    tok = prior.uncondition(2).detach().float().numpy()
    core, path = ov.Core(), str(export_onnx(prior))
    res = {n: profile(core, path, tok, n, args.threads, args.reps) for n in (128, 256)}
    print(f"wall per forward: 128² {res[128][0]:.1f} ms, 256² {res[256][0]:.1f} ms ({res[256][0] / res[128][0]:.2f}×)")
    print(f"{'layer type':24s} {'128² ms':>9s} {'256² ms':>9s} {'ratio':>6s}")
    for k, v in res[256][1].most_common(10):
        a = res[128][1].get(k, 0.0)
        print(f"{k:24s} {a:9.2f} {v:9.2f} {v / a if a else float('nan'):6.2f}")


if __name__ == "__main__":
    main()
