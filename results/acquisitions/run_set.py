"""The scanner-acquisition set (recon_core/sim/acquisitions.py, issue 23 item 7) through the stream processor
with every method: zero-filled, SENSE, GRAPPA, BART pics W (when `bart` is installed) and DDS (shipped prior,
product defaults). PSNR (dB) against each case's truth on the reconSpace grid; a refused case shows its line.

    python results/acquisitions/run_set.py [--out results/acquisitions] [--methods zerofilled,sense,grappa,bart-w,dds]

Writes OUT/acquisition_set.json and OUT/acquisition_set.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from gadget.params import ReconParams
from gadget.processor import StreamProcessor
from recon_core.baselines import available
from recon_core.errors import InputError
from recon_core.io_utils import write_json_atomic, write_text_atomic
from recon_core.prior.cache import get_prior
from recon_core.sim import acquisitions as A


def _psnr(truth, img):
    x = np.abs(np.asarray(img.data)).reshape(truth.shape)
    return float(10 * np.log10(truth.max() ** 2 / np.mean((x - truth) ** 2)))


def run_case(case, method, prior):
    proc = StreamProcessor(case.header, ReconParams(method=method, image_format="float", device="cpu"),
                           prior=prior if method == "dds" else None)
    t0 = time.perf_counter()
    try:
        imgs = [im for im in proc.process(case.acquisitions) if im.image_series_index == 1]
    except InputError as exc:
        return {"refused": str(exc).splitlines()[0]}
    out = {"seconds": round(time.perf_counter() - t0, 2), "images": len(imgs)}
    if case.truth is not None and imgs:
        out["psnr"] = round(_psnr(case.truth, imgs[0]), 2)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--methods", default="zerofilled,sense,grappa,bart-w,dds")
    a = ap.parse_args(argv)
    methods = [m for m in a.methods.split(",") if m and (m == "dds" or available(m))]
    prior = get_prior("default", "cpu") if "dds" in methods else None
    res = {}
    for case in A.cases():
        res[case.name] = {m: run_case(case, m, prior) for m in methods}
        print(case.name, json.dumps(res[case.name]))
    rows = ["| case | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for name, r in res.items():
        cells = [(f"{v['psnr']:.1f}" if "psnr" in v else ("refused" if "refused" in v else f"{v['images']} img"))
                 for v in (r[m] for m in methods)]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    md = ("PSNR (dB) against the truth on the reconSpace grid; command: `python results/acquisitions/run_set.py`\n\n"
          + "\n".join(rows) + "\n")
    write_json_atomic(os.path.join(a.out, "acquisition_set.json"), res)
    write_text_atomic(os.path.join(a.out, "acquisition_set.md"), md)
    print(md)


if __name__ == "__main__":
    main()
