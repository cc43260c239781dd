"""Clinical acquisitions (issue 23): outer-loop averages combined, counters outside the encoded space refused."""

import copy

import ismrmrd
import numpy as np
import pytest

from recon_core.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scan():
    from recon_core.sim.scan import simulate_scan

    return simulate_scan("T2", n_slices=1, matrix=64, coils=4, accel=2, seed=5, snr=25.0, acs_lines=16)


def _process(header, acqs):
    from gadget.params import ReconParams
    from gadget.processor import StreamProcessor

    proc = StreamProcessor(header, ReconParams(method="sense", image_format="float"))
    return list(proc.process(acqs))


def _with_limit(header, name, maximum):
    h = copy.deepcopy(header)
    getattr(h.encoding[0].encodingLimits, name).maximum = maximum
    return h


def _pass(imaging, clean, average, rng, scan):
    """One pass over the imaging lines: the noiseless raw line (`clean`, keyed by line) + fresh noise of the
    scan's covariance, with the given average counter (LAST_IN_SLICE kept on each pass)."""
    from recon_core.sim.acquisition import correlated_noise

    out = []
    for acq in imaging:
        a = ismrmrd.Acquisition(acq.getHead(), acq.data.copy())
        n = correlated_noise((acq.data.shape[0], 1, acq.data.shape[1]), scan.noise_cov, scan.sigma, rng)[:, 0]
        a.data[:] = clean[int(acq.idx.kspace_encode_step_1)] + n
        a.idx.average = average
        out.append(a)
    return out


def test_outer_loop_averages_are_combined_into_one_image(scan):
    """Two passes, each closing the slice with LAST_IN_SLICE: one image, the averages combined — closer to
    the truth than one pass alone (noise variance halved)."""
    from recon_core.sim.acquisition import oversampled_kspace

    rng = np.random.default_rng(0)
    imaging = [a for a in scan.acquisitions if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    noise = [a for a in scan.acquisitions if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    k = oversampled_kspace(scan.maps[0] * scan.reference[0][None], 2)          # (C, ny, 2 nx) noiseless raw
    clean = {ky: k[:, ky] for ky in range(k.shape[1])}
    p1, p2 = _pass(imaging, clean, 0, rng, scan), _pass(imaging, clean, 1, rng, scan)
    both = _process(_with_limit(scan.header, "average", 1), noise + p1 + p2)
    assert len(both) == 1
    one = _process(scan.header, noise + p1)
    ref = np.abs(scan.reference[0])

    def err(img):
        x = np.abs(np.asarray(img.data)).reshape(ref.shape)
        return np.linalg.norm(x - ref) / np.linalg.norm(ref)

    assert err(both[0]) < 0.9 * err(one[0])
    # an average index beyond the header's averages is refused, naming the counter
    with pytest.raises(InputError, match="average index 1"):
        _process(scan.header, noise + p1 + p2)


def test_partition_counter_outside_a_2d_header_is_refused(scan):
    acqs = [ismrmrd.Acquisition(a.getHead(), a.data.copy()) for a in scan.acquisitions]
    for a in acqs[len(acqs) // 2:]:
        if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            a.idx.kspace_encode_step_2 = 1
    with pytest.raises(InputError, match="kspace_encode_step_2 = 1"):
        _process(scan.header, acqs)


def test_recon_space_is_honoured_for_a_reduced_phase_resolution():
    """192-of-256-style phase resolution: 48 encoded lines over the same FOV as a 64×64 reconSpace → a 64×64
    image with square pixels (k-space zero-padded as a scanner does), close to the truth's 48-line low-pass."""
    from recon_core.fft import fft2c_np, ifft2c_np
    from recon_core.sim.scan import simulate_scan

    full = simulate_scan("T1", n_slices=1, matrix=64, coils=4, accel=1, seed=9, snr=40.0, acs_lines=16)
    h = copy.deepcopy(full.header)
    enc = h.encoding[0]
    enc.encodedSpace.matrixSize.y = 48
    enc.encodingLimits.kspace_encoding_step_1.maximum = 47
    enc.encodingLimits.kspace_encoding_step_1.center = 24
    acqs = []
    for a in full.acquisitions:
        b = ismrmrd.Acquisition(a.getHead(), a.data.copy())
        if not b.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            ky = int(a.idx.kspace_encode_step_1) - 8
            if not 0 <= ky < 48:
                continue
            b.idx.kspace_encode_step_1 = ky
        acqs.append(b)
    acqs[-1].set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
    (img,) = _process(h, acqs)
    x = np.abs(np.asarray(img.data)).reshape(img.data.shape[-2:])
    assert x.shape == (64, 64)
    k = fft2c_np(full.reference[0])
    k[:8], k[56:] = 0, 0
    # orthonormal FFTs: 48 of the 64 lines read as a 48-line k-space give an image √(64/48) brighter; the
    # interpolation to 64 rows keeps the encoded image's intensity
    truth = np.abs(ifft2c_np(k)) * np.sqrt(64 / 48)
    assert np.linalg.norm(x - truth) / np.linalg.norm(truth) < 0.03


def test_coil_compression_keeps_the_image_and_says_so():
    """32 coils → SVD virtual coils keeping 99 % of the calibration energy (fewer than 32): the SENSE image
    matches the uncompressed one, and the meta names the compression."""
    from gadget.params import ReconParams
    from gadget.processor import StreamProcessor
    from recon_core.sim.scan import simulate_scan

    s32 = simulate_scan("PD", n_slices=1, matrix=64, coils=32, accel=2, seed=11, snr=35.0, acs_lines=16)

    def run(**kw):
        proc = StreamProcessor(s32.header, ReconParams(method="sense", image_format="float", **kw))
        (img,) = list(proc.process(s32.acquisitions))
        return np.abs(np.asarray(img.data)).reshape(64, 64), img

    full, im_full = run(compress_coils_above=64)
    comp, im_comp = run()
    assert "coil_compression" not in im_full.meta.keys()
    note = im_comp.meta["coil_compression"]
    n = int(note.split("→ ")[1].split(" ")[0])
    assert note.startswith("32 → ") and 4 <= n < 32
    ref = np.abs(s32.reference[0])
    e_full = np.linalg.norm(full - ref) / np.linalg.norm(ref)
    e_comp = np.linalg.norm(comp - ref) / np.linalg.norm(ref)
    assert e_comp < e_full * 1.15 + 0.005
    assert float(note.split("(")[1].split(" %")[0]) >= 99.0


def test_partial_fourier_is_detected_masked_and_said():
    """6/8 partial Fourier in phase and an asymmetric echo in readout: the unacquired k-space is not treated as
    measured zeros (mask), the slice says so (SliceData and image meta)."""
    from recon_core.sim.acquisitions import drop_first_samples
    from recon_core.sim.scan import simulate_scan

    full = simulate_scan("T2", n_slices=1, matrix=64, coils=4, accel=1, seed=13, snr=40.0, acs_lines=16)
    acqs = []
    for a in full.acquisitions:
        b = ismrmrd.Acquisition(a.getHead(), a.data.copy())
        if not b.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            if int(a.idx.kspace_encode_step_1) < 16:           # 6/8 in phase: the first 16 of 64 lines missing
                continue
            b = drop_first_samples(a, a.data.shape[1] // 5)      # asymmetric echo: the first 20 % missing
        acqs.append(b)
    from gadget.params import ReconParams
    from gadget.processor import StreamProcessor
    from recon_core.raw.assembly import Assembler

    proc = StreamProcessor(full.header, ReconParams(method="sense", image_format="float"))
    asm = Assembler(proc.geom)
    sds = [sd for a in acqs for sd in asm.add(a)] + asm.flush()
    (sd,) = sds
    assert sd.partial_fourier["phase"] == pytest.approx(0.75, abs=0.02)
    assert 0.75 < sd.partial_fourier["readout"] < 0.85
    assert not sd.mask[:16].any() and not sd.mask[40, :10].any() and sd.mask[40, 20:].all()
    (img,) = list(proc.process(acqs))
    assert "phase 0.75" in img.meta["partial_fourier"] and "POCS" in img.meta["partial_fourier"]
    # POCS recovers the missing side better than leaving it zero (the zero-filled path keeps it zero)
    ref = np.abs(full.reference[0])
    x = np.abs(np.asarray(img.data)).reshape(ref.shape)
    zf_proc = StreamProcessor(full.header, ReconParams(method="zerofilled", image_format="float"))
    (zf,) = list(zf_proc.process(acqs))
    z = np.abs(np.asarray(zf.data)).reshape(ref.shape)
    err = lambda a: np.linalg.norm(a - ref) / np.linalg.norm(ref)  # noqa: E731
    assert err(x) < 0.7 * err(z)
    assert "zero" in zf.meta["partial_fourier"]
    # DDS: the prior's estimate under data consistency, then the same POCS completion (its effect with the shipped
    # prior: results/acquisitions/acquisition_set.md, +8.4 dB in phase, +6.8 dB asymmetric echo; an untrained tiny
    # prior here, so only the path and its meta are checked)
    from recon_core.prior import build_prior

    dds_proc = StreamProcessor(full.header, ReconParams(method="dds", image_format="float", nfe=4, device="cpu"),
                               prior=build_prior("tiny").eval())
    (dd,) = list(dds_proc.process(acqs))
    assert "POCS" in dd.meta["partial_fourier"] and "prior's estimate" in dd.meta["partial_fourier"]
    assert np.isfinite(np.asarray(dd.data)).all() and np.abs(np.asarray(dd.data)).max() > 0
