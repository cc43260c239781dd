"""The scanner-shaped acquisition set (issue 23 item 7, recon_core/sim/acquisitions.py): every case with its
expected outcome through the stream processor, classical methods (DDS: the evaluation replays the files)."""

import numpy as np
import pytest

from recon_core.errors import InputError
from recon_core.sim import acquisitions as A

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = {c.__name__: c for c in (A.reduced_phase_resolution, A.odd_matrix, A.partial_fourier_phase,
                                 A.asymmetric_echo, A.outer_averages, A.partition_counter, A.many_coils,
                                 A.rectangular_fov_fold)}


def _run(case, method):
    from gadget.params import ReconParams
    from gadget.processor import StreamProcessor

    proc = StreamProcessor(case.header, ReconParams(method=method, image_format="float"))
    return list(proc.process(case.acquisitions))


def _psnr(truth, img):
    x = np.abs(np.asarray(img.data)).reshape(truth.shape)
    return 10 * np.log10(truth.max() ** 2 / np.mean((x - truth) ** 2))


def _params():
    out = []
    for name, build in CASES.items():
        case = build()
        e = case.expect
        if "refuse" in e:
            out.append(pytest.param(case, "sense", id=f"{case.name}-refused"))
        for m in e.get("psnr_min", {}):
            out.append(pytest.param(case, m, id=f"{case.name}-{m}"))
        for m, (_, why) in e.get("known_failure", {}).items():
            out.append(pytest.param(case, m, id=f"{case.name}-{m}-known-failure",
                                    marks=pytest.mark.xfail(strict=True, reason=why)))
    return out


@pytest.mark.parametrize("case,method", _params())
def test_case_outcome(case, method):
    e = case.expect
    if "refuse" in e:
        with pytest.raises(InputError, match=e["refuse"]):
            _run(case, method)
        return
    imgs = _run(case, method)
    assert len(imgs) == e.get("images", 1)
    img = imgs[0]
    assert list(np.asarray(img.data).shape[-2:]) == e["shape"]
    floor = e.get("psnr_min", {}).get(method) or e["known_failure"][method][0]
    assert _psnr(case.truth, img) > floor
    for key, text in e.get("meta", {}).items():
        assert text in img.meta[key]


def test_write_set(tmp_path):
    import json

    from recon_core.raw.reader import read_slices

    paths = A.write_set(tmp_path)
    assert len(paths) == len(CASES)
    expected = json.loads((tmp_path / "expected.json").read_text())
    assert expected["partition_counter"] == {"refuse": "kspace_encode_step_2 = 1"}
    raw = read_slices(tmp_path / "many_coils.h5")
    assert raw.slices[0].kspace.shape[0] == 32
