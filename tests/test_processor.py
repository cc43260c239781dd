"""StreamProcessor: input variants reconstruct, headers/meta are right, slices stream out as they complete."""

import json

import ismrmrd
import numpy as np

from gadget.images import to_float
import pytest

from recon_core.raw import Assembler, EncodingGeometry
from gadget.params import ReconParams
from gadget.processor import StreamProcessor
from recon_core.errors import InputError
from recon_core.metadata.header import parse_header
from test_processor_helpers import build_stream, line_mask, make_header, phantom_scan, psnr

NY = NX = 48
C = 6
S = 2


@pytest.fixture(scope="module")
def scan():
    return phantom_scan(n_slices=S, ny=NY, nx=NX, n_coils=C)


def _run(acqs, method="sense", enc_nx=None, **kw):
    params = ReconParams(method=method, device="cpu", send_zerofilled=True, **kw)
    proc = StreamProcessor(make_header(NX, NY, S, enc_nx=enc_nx, n_coils=C), params)
    imgs = list(proc.process(acqs))
    mag = {im.slice: to_float(im) for im in imgs if im.image_series_index == 1}   # as the scanner gets them
    zf = {im.slice: to_float(im) for im in imgs if im.image_series_index == 4}
    return imgs, mag, zf


def _check_better_than_zerofilled(ref, mag, zf, margin=1.0):
    for s in range(S):
        p_rec, p_zf = psnr(ref[s], mag[s]), psnr(ref[s], zf[s])
        assert p_rec > p_zf + margin, (s, p_rec, p_zf)


def _noise_cov(seed=1):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((C, C)) + 1j * rng.standard_normal((C, C))
    cov = A @ A.conj().T / C + 0.2 * np.eye(C)
    return cov / np.real(np.trace(cov)) * C


VARIANTS = {
    "plain": dict(),
    "oversampled": dict(oversample=2),
    "prewhitened": dict(noise_std=0.02, noise_cov="corr", n_noise=40),
    "calibration_and_imaging": dict(calib_mode="and_imaging"),
    "calibration_only": dict(calib_mode="only", imaging_without_centre=True),
    "averaged": dict(averages=2, noise_std=0.02),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_reconstruct_better_than_zerofilled(scan, variant):
    objs, maps = scan
    kw = dict(VARIANTS[variant])
    rows = line_mask(NY, accel=3, acs=12, seed=2)
    calib = None
    if kw.pop("imaging_without_centre", False):
        calib = rows.copy() & False
        calib[NY // 2 - 6: NY // 2 + 6] = True
        rows = np.zeros(NY, bool)
        rows[1::3] = True
    elif "calib_mode" in kw:
        calib = np.zeros(NY, bool)
        calib[NY // 2 - 6: NY // 2 + 6] = True
    if kw.get("noise_cov") == "corr":
        kw["noise_cov"] = _noise_cov()
    acqs = build_stream(objs, maps, rows, calib_rows=calib, seed=3, **kw)
    imgs, mag, zf = _run(acqs, "sense", enc_nx=NX * kw.get("oversample", 1))
    assert sorted(mag) == list(range(S))
    assert all(m.shape == (NY, NX) and m.dtype == np.float32 for m in mag.values())
    src = {im.meta["acs_source"] for im in imgs}
    assert src == ({"calibration-lines"} if calib is not None else {"kspace-centre"})
    _check_better_than_zerofilled(objs, mag, zf)


def test_oversampled_equals_plain(scan):
    """Removing 2× readout oversampling gives exactly the non-oversampled reconstruction."""
    objs, maps = scan
    rows = line_mask(NY, accel=3, acs=12)
    _, plain, _ = _run(build_stream(objs, maps, rows), "zerofilled")
    _, over, _ = _run(build_stream(objs, maps, rows, oversample=2), "zerofilled", enc_nx=2 * NX)
    for s in range(S):
        np.testing.assert_allclose(over[s], plain[s], atol=1e-4 * plain[s].max())


def test_prewhitener_whitens_correlated_noise():
    cov = _noise_cov()
    objs, maps = phantom_scan(n_slices=1, ny=16, nx=16, n_coils=C)
    acqs = build_stream(objs, maps, np.ones(16, bool), noise_std=1.0, noise_cov=cov, n_noise=400, seed=5)
    geom = EncodingGeometry.from_header(parse_header(make_header(16, 16, 1, n_coils=C)))
    asm = Assembler(geom)
    for a in acqs:
        if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            asm.add(a)
    W = asm.prewhitener()
    white = W @ cov @ W.conj().T
    np.testing.assert_allclose(white, np.eye(C), atol=0.08)  # ~6400 samples → a few % estimation error


def test_prewhitening_helps_with_correlated_noise(scan):
    """Strongly correlated noise: prewhitened (noise readouts sent) beats the same data without them."""
    objs, maps = scan
    rows = line_mask(NY, accel=2, acs=12, seed=4)
    cov = _noise_cov(seed=7)
    with_noise = build_stream(objs, maps, rows, noise_std=0.05, noise_cov=cov, n_noise=60, seed=8)
    without = [a for a in with_noise if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    _, white, _ = _run(with_noise, "sense")
    _, raw, _ = _run(without, "sense")
    gain = np.mean([psnr(objs[s], white[s]) - psnr(objs[s], raw[s]) for s in range(S)])
    assert gain > 2.0, gain


def test_prewhitened_images_keep_scanner_units(scan):
    """Fully sampled, nearly noise-free data with strongly correlated noise readouts: the prewhitened
    reconstruction is the object itself (intensity convention of unit-norm unwhitened maps)."""
    objs, maps = scan
    acqs = build_stream(objs, maps, np.ones(NY, bool), noise_std=1e-3, noise_cov=_noise_cov(seed=7), n_noise=60)
    _, mag, _ = _run(acqs, "zerofilled")
    for s in range(S):
        assert psnr(objs[s], mag[s]) > 40


def test_headers_and_meta(scan):
    objs, maps = scan
    positions = [(1.5, -2.0, 10.0 + 5 * s) for s in range(S)]
    acqs = build_stream(objs, maps, line_mask(NY), positions=positions)
    params = ReconParams(method="zerofilled", device="cpu", send_phase=True, send_zerofilled=True,
                         anatomy="knee", pathology=["edema"], seed=11)
    proc = StreamProcessor(make_header(NX, NY, S, fov=(230.0, 200.0, 4.0), n_coils=C), params)
    imgs = list(proc.process(acqs))
    assert len(imgs) == 3 * S
    assert [im.image_series_index for im in imgs] == [1, 2, 4] * S
    assert [im.image_type for im in imgs] == [ismrmrd.IMTYPE_MAGNITUDE, ismrmrd.IMTYPE_PHASE,
                                              ismrmrd.IMTYPE_MAGNITUDE] * S
    for im in imgs:
        s = im.slice
        assert im.data.dtype == np.uint16 and im.data.shape == (1, 1, NY, NX)      # the scanner's convention
        assert im.data_type == ismrmrd.DATATYPE_USHORT and int(im.data.max()) <= 4095
        wc, ww = int(im.meta["WindowCenter"]), int(im.meta["WindowWidth"])
        assert 0 <= wc <= 4095 and ww >= 1 and im.meta["BitsStored"] == "12"
        assert im.meta["ImageProcessingHistory"][0] == "CONTEXTMRI" and im.meta["Keep_image_geometry"] == "1"
        assert im.meta["ImageProcessingHistory"][1] == "ZEROFILLED"
        assert im.meta["SequenceDescriptionAdditional"].startswith("CTXMRI_")
        assert "NFE=" in im.meta["ImageComments"] and "seed=11" in im.meta["ImageComments"]
        assert tuple(im.matrix_size) == (NX, NY, 1)
        assert tuple(im.field_of_view) == pytest.approx((230.0, 200.0, 4.0))
        assert tuple(im.position) == pytest.approx(positions[s])
        assert tuple(im.read_dir) == (1.0, 0.0, 0.0) and tuple(im.phase_dir) == (0.0, 1.0, 0.0)
        assert tuple(im.slice_dir) == (0.0, 0.0, 1.0)
        assert (im.contrast, im.repetition) == (0, 0)
        assert im.image_index == s + 1
        m = im.meta
        for key in ("prompt", "model", "NFE", "CFG", "seed", "method", "metadata"):
            assert key in m, key
        rec = json.loads(m["metadata"])
        assert rec["slice"] == s and rec["anatomy"] == "knee" and rec["pathology"] == ["edema"]
        assert rec["contrast"] == "T2" and rec["tr"] == 4000.0
        assert m["prompt"].startswith(f"knee, Slice {s}, T2, Pathology: edema")
        assert m["seed"] == "11"
    phase = [to_float(im) for im in imgs if im.image_series_index == 2]
    assert all(np.abs(p).max() <= np.pi + 1e-5 for p in phase)
    assert {im.meta["DataRole"] for im in imgs} == {"Image", "Phase", "ZeroFilled"}
    # serialisation round trip keeps header and meta
    back = ismrmrd.Image.from_bytes(imgs[0].to_bytes())
    assert back.meta["prompt"] == imgs[0].meta["prompt"] and back.image_series_index == 1


def test_slices_stream_out_before_later_slices_arrive(scan):
    objs, maps = scan
    acqs = build_stream(objs, maps, line_mask(NY))
    consumed = []

    def source():
        for i, a in enumerate(acqs):
            consumed.append(i)
            yield a

    proc = StreamProcessor(make_header(NX, NY, S, n_coils=C), ReconParams(method="zerofilled", device="cpu"))
    it = proc.process(source())
    first = next(it)
    assert first.slice == 0
    last_of_slice0 = max(i for i, a in enumerate(acqs) if a.idx.slice == 0)
    assert len(consumed) == last_of_slice0 + 1 < len(acqs)
    rest = list(it)
    assert [im.slice for im in rest] == [1]


def test_end_of_stream_without_last_in_slice_flags(scan):
    objs, maps = scan
    acqs = build_stream(objs, maps, line_mask(NY))
    for a in acqs:
        a.clear_flag(ismrmrd.ACQ_LAST_IN_SLICE)
    _, mag, _ = _run(acqs, "zerofilled")
    assert sorted(mag) == list(range(S))


def test_process_buffer_matches_stream(scan):
    objs, maps = scan
    acqs = build_stream(objs, maps, line_mask(NY))
    proc = StreamProcessor(make_header(NX, NY, S, n_coils=C), ReconParams(method="sense", device="cpu"))
    streamed = [im for im in proc.process(acqs) if im.slice == 1]
    lines = [a for a in acqs if a.idx.slice == 1]
    ksp = np.zeros((C, NY, NX), np.complex64)
    for a in lines:
        ksp[:, a.idx.kspace_encode_step_1] = a.data
    buf = proc.process_buffer(ksp, [a.getHead() for a in lines])
    assert len(buf) == 1 and buf[0].slice == 1
    np.testing.assert_allclose(buf[0].data, streamed[0].data, rtol=1e-5, atol=1e-6)
    assert tuple(buf[0].position) == tuple(streamed[0].position)


def test_no_acs_is_reported(scan):
    objs, maps = scan
    rows = np.zeros(NY, bool)
    rows[::3] = True
    proc = StreamProcessor(make_header(NX, NY, S, n_coils=C), ReconParams(method="zerofilled", device="cpu"))
    with pytest.raises(InputError, match="no ACS"):
        list(proc.process(build_stream(objs, maps, rows)))


def test_params_from_mapping():
    p = ReconParams.from_mapping({"method": "L1Wavelet", "cfg": "3.5", "nfe": "20", "send-std": "yes",
                                  "pathology": "tumor, edema", "anatomy": "", "max_matrix": "256"})
    assert (p.method, p.cfg, p.nfe, p.send_std, p.pathology, p.anatomy, p.max_matrix) == \
        ("l1wavelet", 3.5, 20, True, ["tumor", "edema"], None, 256)
    assert ReconParams.from_mapping({"pathology": "none"}).pathology == []
    assert ReconParams().overrides() == {}
    with pytest.raises(InputError, match="method"):
        ReconParams.from_mapping({"method": "magic"})
    with pytest.raises(InputError, match="nfe"):
        ReconParams.from_mapping({"nfe": "many"})
    with pytest.raises(InputError, match="unknown"):
        ReconParams.from_mapping({"colour": "red"}, strict=True)


def test_discarded_samples_are_dropped(scan):
    """Readouts with discard_pre/post junk samples reconstruct exactly like the clean stream."""
    objs, maps = scan
    rows = line_mask(NY)
    clean = build_stream(objs, maps, rows)
    padded = []
    for a in build_stream(objs, maps, rows):
        junk = np.full((a.active_channels, 3), 1e3, np.complex64)
        b = ismrmrd.Acquisition.from_array(np.concatenate([junk, a.data, junk[:, :2]], axis=1))
        n = b.number_of_samples
        b.setHead(a.getHead())
        b.resize(n, a.active_channels)
        b.data[:] = np.concatenate([junk, a.data, junk[:, :2]], axis=1)
        b.discard_pre, b.discard_post, b.center_sample = 3, 2, a.center_sample + 3
        padded.append(b)
    _, want, _ = _run(clean, "zerofilled")
    _, got, _ = _run(padded, "zerofilled")
    for s in range(S):
        np.testing.assert_allclose(got[s], want[s], rtol=1e-5, atol=1e-6)
