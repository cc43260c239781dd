"""OpenRecon/FIRE conventions (issue 15): images the scanner takes as its own, reserved configs."""

from __future__ import annotations

import os

import ismrmrd
import numpy as np
import pytest

from gadget.images import slice_images, to_float, window


def _scan_file(tmp_path):
    from recon_core.sim import simulate_scan, write_scan

    return write_scan(str(tmp_path / "s.h5"), simulate_scan("T1", n_slices=2, matrix=32, coils=4, seed=0))


def _with_config(data: bytes, name: str) -> bytes:
    """The client bytes with another CONFIG_FILE name (the first message: id 1 + 1024-byte name)."""
    return data[:2] + name.encode().ljust(1024, b"\0") + data[2 + 1024:]


def test_uint16_is_scaled_to_bits_stored_and_round_trips():
    rng = np.random.default_rng(0)
    img = (rng.random((16, 16)) + 1j * rng.random((16, 16))).astype(np.complex64) * 3e-5
    std = np.abs(img) * 0.1
    mag, ph, sd = slice_images(img, None, (240, 240, 4), 1, {"method": "dds", "CFG": 2, "NFE": 50, "seed": 0},
                               std=std, send_phase=True, send_std=True, fmt="uint16", bits=12)
    assert mag.data.dtype == np.uint16 and int(mag.data.max()) == 4095           # full scale = slice max
    assert [m.image_series_index for m in (mag, ph, sd)] == [1, 2, 3]
    np.testing.assert_allclose(to_float(mag), np.abs(img), atol=0.5 * float(mag.meta["FloatScale"]) + 1e-12)
    np.testing.assert_allclose(to_float(ph), np.angle(img), atol=np.pi / 4095 + 1e-6)
    assert mag.meta["FloatScale"] == sd.meta["FloatScale"]                       # std comparable with magnitude
    wc, ww = window(mag.data[0, 0])
    assert (str(wc), str(ww)) == (mag.meta["WindowCenter"], mag.meta["WindowWidth"])
    lo, hi = np.percentile(mag.data, [1, 99])
    assert abs(wc - (lo + hi) / 2) <= 0.5 and abs(ww - (hi - lo)) <= 0.5
    assert mag.meta["SequenceDescriptionAdditional"] == "CTXMRI_DDS_CFG2" and sd.meta["DataRole"] == "Uncertainty"
    assert sd.meta["SequenceDescriptionAdditional"].endswith("_STD")
    c = slice_images(img, None, (240, 240, 4), 1, {"method": "sense"}, fmt="complex")[0]
    assert c.data.dtype == np.complex64 and c.image_type == ismrmrd.IMTYPE_COMPLEX
    np.testing.assert_array_equal(c.data[0, 0], img)
    b16 = slice_images(img, None, (240, 240, 4), 1, {"method": "sense"}, fmt="uint16", bits=16)[0]
    assert int(b16.data.max()) == 65535


@pytest.mark.parametrize("bad", [{"image_format": "png"}, {"bits_stored": "20"}, {"bits_stored": "7"}])
def test_bad_image_settings_are_refused(bad):
    from gadget.params import ReconParams
    from recon_core.errors import InputError

    with pytest.raises(InputError, match="image_format|bits_stored"):
        ReconParams.from_mapping(bad)


def test_reserved_configs_null_and_savedataonly(tmp_path):
    """`null`: consume, return nothing; `savedataonly`: save the raw stream, return nothing (needs
    --save-raw); an ordinary config on the same server still reconstructs."""
    from gadget.mrd_server import session_from_bytes
    from tests.test_server_replay import client_bytes
    from test_server_support import parse_reply

    f = _scan_file(tmp_path)
    data = client_bytes(f, {"method": "zerofilled"})
    res, out = session_from_bytes(_with_config(data, "null"))
    images, texts, closed = parse_reply(out)
    assert res.outcome == "ok" and closed and not images and not texts and res.acquisitions > 0
    raw_dir = tmp_path / "raw"
    res, out = session_from_bytes(_with_config(data, "savedataonly"), save_raw=str(raw_dir))
    images, texts, closed = parse_reply(out)
    assert res.outcome == "ok" and closed and not images and res.raw_file and os.path.exists(res.raw_file)
    ds = ismrmrd.Dataset(res.raw_file, "dataset", create_if_needed=False)
    try:
        assert ds.number_of_acquisitions() == res.acquisitions
    finally:
        ds.close()
    res, out = session_from_bytes(_with_config(data, "savedataonly"))
    assert "needs a server started with --save-raw" in res.outcome and b"--save-raw" in out
    ok, out = session_from_bytes(data)
    assert ok.outcome == "ok" and len(parse_reply(out)[0]) == 2
