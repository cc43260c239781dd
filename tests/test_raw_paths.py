"""One raw-data layer: a multi-contrast, multi-repetition, 2×-oversampled, prewhitening-needing ISMRMRD
file gives identical normalised images and identical metadata records (slice index included) through the
gadget path (`replay` → StreamProcessor) and the training path (`training.datasets.ismrmrd_dataset`)."""

from __future__ import annotations

import numpy as np
import pytest


pytestmark = pytest.mark.usefixtures("one_thread")


def _multi_file(tmp_path):
    """A simulator scan (noise readouts, correlated coil noise, 2× readout oversampling, fully sampled) whose
    imaging acquisitions are repeated as contrast 1 (scaled) and repetition 1 (extra noise)."""
    import ismrmrd

    from recon_core.sim import simulate_scan, write_scan

    scan = simulate_scan("T2", n_slices=2, matrix=32, coils=4, mask="uniform1d", accel=1, seed=3)
    src = write_scan(str(tmp_path / "src.h5"), scan)
    ds = ismrmrd.Dataset(src, "dataset", False)
    xml = ds.read_xml_header()
    acqs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
    ds.close()
    header = ismrmrd.xsd.CreateFromDocument(xml)
    lim = header.encoding[0].encodingLimits
    lim.contrast = ismrmrd.xsd.limitType(minimum=0, maximum=1, center=0)
    lim.repetition = ismrmrd.xsd.limitType(minimum=0, maximum=1, center=0)
    out = ismrmrd.Dataset(str(tmp_path / "multi.h5"), "dataset", True)
    out.write_xml_header(ismrmrd.xsd.ToXML(header))
    rng = np.random.default_rng(0)
    noise = [a for a in acqs if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    data = [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    assert noise and data and data[0].number_of_samples == 64          # 2× oversampled readout
    for a in noise:
        out.append_acquisition(a)
    for contrast, rep, f in ((0, 0, 1.0), (1, 0, 0.6), (0, 1, 1.0)):
        for a in data:
            b = ismrmrd.Acquisition.from_array(np.ascontiguousarray(a.data), a.traj if a.traj.size else None)
            b.setHead(a.getHead())
            b.idx.contrast, b.idx.repetition = contrast, rep
            d = a.data * f
            if rep:
                d = d + 0.02 * np.abs(a.data).max() * (rng.standard_normal(d.shape) + 1j * rng.standard_normal(d.shape))
            b.data[:] = d.astype(np.complex64)
            out.append_acquisition(b)
    out.close()
    return str(tmp_path / "multi.h5")


def test_gadget_and_training_paths_agree(tmp_path):
    from gadget.params import ReconParams
    from gadget.replay import replay
    from recon_core.mvue import normalize
    from training.datasets import _centre_crop, ismrmrd_dataset

    path = _multi_file(tmp_path)
    res = replay(path, None, ReconParams(method="zerofilled", device="cpu"), progress=False)
    gadget = {(r.key.slice, r.key.contrast, r.key.repetition): r for r in res.results}
    assert len(gadget) == 6                                   # 2 slices × {c0 r0, c1 r0, c0 r1}
    ds = ismrmrd_dataset(path, tmp_path / "cache", 32, progress=False)
    assert len(ds) == 6
    import json

    index = [json.loads(line) for line in (tmp_path / "cache" / "train" / "index.jsonl").read_text().splitlines()]
    for i, ix in enumerate(index):
        key = (ix["slice_index"], ix["contrast_index"], ix["repetition"])
        g = gadget[key]
        gn, _ = normalize(_centre_crop(g.image, 32, 32))
        x, rec = ds[i]
        np.testing.assert_allclose(x[0] + 1j * x[1], gn, rtol=0, atol=2e-5 * np.abs(gn).max())
        assert rec == g.record and rec.slice == key[0]          # one slice definition: the scanner's counter
    # the three (contrast, repetition) entries of a slice are kept apart (nothing was merged): contrast 1 is
    # the same data × 0.6 (same normalised image, 0.6 × the scale), repetition 1 has extra noise
    scale = np.load(tmp_path / "cache" / "train" / "scale.npy")
    pos = {(ix["slice_index"], ix["contrast_index"], ix["repetition"]): i for i, ix in enumerate(index)}
    for s in (0, 1):
        base, c1, r1 = pos[(s, 0, 0)], pos[(s, 1, 0)], pos[(s, 0, 1)]
        assert scale[c1] / scale[base] == pytest.approx(0.6, rel=1e-4)
        assert np.abs(np.asarray(ds[base][0]) - np.asarray(ds[r1][0])).max() > 1e-3
