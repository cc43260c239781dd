"""The one stream processor: ISMRMRD header + acquisitions in → `ismrmrd.Image`s out.

Replay, the Gadgetron gadget and the MRD server are thin front doors over `StreamProcessor`:

    proc = StreamProcessor(header, ReconParams(method="dds", cfg=2.0), prior=None)
    for image in proc.process(acquisitions):   # yields as each slice's LAST_IN_SLICE arrives
        ...

Per slice: noise prewhitening, readout-oversampling removal, averaging of repeated lines
(`recon_core.raw`), ESPIRiT maps from the ACS (`recon_core.raw.image.slice_maps`, torch backend),
the metadata record and prompt from the header (+ overrides), then DDS (`recon_core.samplers.dds`) or a
baseline (`recon_core.baselines`). Images carry reconSpace matrix/FOV, the acquisition geometry and
counters, and meta attributes (prompt, model, NFE, CFG, seed, method, metadata JSON).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import ismrmrd.xsd
import numpy as np

from recon_core import baselines
from recon_core.coils import calib_region
from recon_core.errors import InputError
from recon_core.masks import realised_accel
from recon_core.metadata.header import parse_header, record_from_header
from recon_core.metadata.prompt import build_prompt
from recon_core.partial_fourier import pocs
from recon_core.prior.cache import get_prior
from recon_core.prior.domain import ADVICE, domain_of, domain_warnings
from recon_core.raw import Assembler, EncodingGeometry, SliceData, SliceKey, acs_mask, locate_acs, slice_key
from recon_core.raw.coil_compression import compress_slice
from recon_core.raw.image import scanner_units, slice_maps
from recon_core.raw.retrospective import object_region
from recon_core.samplers import get_spec, sample_slices
from recon_core.samplers.base import prior_device
from recon_core.samplers.selfval import reuse_choice
from recon_core.uncertainty import error_estimate, error_model_of, expected_rmse, holdout_rescaled

from .images import slice_images
from .params import ReconParams, is_diffusion

log = logging.getLogger("contextmri.processor")
COVERAGE_WARN = 0.97   # calibration coverage below this is reported (log + image meta)
AUTO_SLICE_BATCH_CUDA = 8   # slice_batch 0 (auto) on a GPU


@dataclass
class SliceResult:
    """Arrays of one reconstructed slice (all cropped to the reconSpace phase-encode size).

    image (ny, nx) complex64 scanner units; std (ny, nx) float32 or None; zerofilled (ny, nx)
    complex64 or None; maps (C, ny, nx) complex64 (uncropped); record: MetadataRecord; prompt: str.
    """
    key: SliceKey
    image: np.ndarray
    std: np.ndarray | None
    zerofilled: np.ndarray | None
    maps: np.ndarray
    record: object
    prompt: str
    acs_source: str
    head: object
    timings: dict = field(default_factory=dict)
    precision: str | None = None   # what the network ran in (precision "auto" resolves per machine)
    calibration: dict = field(default_factory=dict)   # recon_core.raw.image.calibration_quality
    sampler_info: dict = field(default_factory=dict)  # self-validation choice, noise σ and γ used (diffusion)
    acquisition: dict = field(default_factory=dict)   # coil compression, partial Fourier (what the data were)
    error: np.ndarray | None = None    # (ny, nx) float32 calibrated error estimate (samples > 1; recon_core.uncertainty)
    uncertainty: dict = field(default_factory=dict)   # expected RMS error in the head, how the estimate is made


def _as_header(header):

    if isinstance(header, ismrmrd.xsd.ismrmrdHeader):
        return header
    if header is None:
        raise InputError("missing ISMRMRD header")

    return parse_header(header)


def _sampler_info(timings: dict, b: int = 0) -> dict:
    """What a diffusion run decided for slice `b` of its batch: self-validation (choice, held-out errors,
    reason), the k-space noise σ (normalised units), the data weight γ it used and the network's engine."""
    out = {}
    if timings.get("self_validation"):
        out["self_validation"] = timings["self_validation"][b]
    if timings.get("noise_sigma"):
        out["noise_sigma"], out["gamma"] = float(timings["noise_sigma"][b]), float(timings["gamma"][b])
    if timings.get("engine"):
        out["engine"] = timings["engine"]
    return out


class StreamProcessor:
    """Reconstruct a Cartesian 2-D (multi-slice) ISMRMRD stream.

    header: ismrmrd.xsd.ismrmrdHeader or its XML (str/bytes); params: ReconParams (default: DDS with the
    default model); prior: an already loaded Prior (else loaded via `recon_core.prior.cache.get_prior` on
    first DDS use); on_slice: optional callback(SliceResult) after each slice (progress bars, demo).
    """
    def __init__(self, header, params: ReconParams | None = None, prior=None,
                 on_slice: Callable[[SliceResult], None] | None = None):
        self.header = _as_header(header)
        self.params = (params or ReconParams()).validate()
        self.geom = EncodingGeometry.from_header(self.header, self.params.max_matrix)
        self._prior = prior
        self._prior_given = prior is not None
        self.on_slice = on_slice
        self._index: dict[int, int] = {}
        self.results: list[SliceResult] = []  # light copies kept for callers (no maps)
        self._domain_warned = False
        self._pf_warned = False
        self._sv_votes: list = []   # self-validation choices of this series' first slices (selfval_slices)
        self._sv_ratios: list = []  # their hold-out error ratios (K ≥ 2, DDS kept): rescale the series' error maps
        self.domain_warning: str | None = None
        self.keep_results = False

    # ------------------------------------------------------------------ model
    @property
    def prior(self):
        if self._prior is None:
            self._prior = get_prior(self.params.prior_model, self.params.device)
        return self._prior

    def model_name(self) -> str:
        if not is_diffusion(self.params.method):
            return "none"
        if self._prior_given:
            manifest = getattr(self._prior, "manifest", None) or {}
            return str(manifest.get("name") or manifest.get("preset") or self.params.model)
        return self.params.model

    # ------------------------------------------------------------------ streams
    def process(self, acquisitions: Iterable) -> Iterator:
        """Yield ismrmrd.Image for each slice as it completes (LAST_IN_SLICE), the rest at end of stream.
        With `slice_batch` n > 1, completed slices wait until n are ready (or the stream ends) and are
        reconstructed together (one network batch): higher throughput, up to n − 1 slices more latency."""
        asm = Assembler(self.geom)
        n = self.slice_batch()
        pending: list = []
        for acq in acquisitions:
            pending += asm.add(acq)
            while len(pending) >= n:
                yield from self.reconstruct_many(pending[:n])
                pending = pending[n:]
        pending += asm.flush()
        while pending:
            yield from self.reconstruct_many(pending[:n])
            pending = pending[n:]

    def slice_batch(self) -> int:
        """Slices per reconstruction: `params.slice_batch`, 0 (auto) → 1 on a CPU (measured: no gain there,
        only latency), AUTO_SLICE_BATCH_CUDA on a GPU; classical methods always 1."""
        p = self.params
        if not is_diffusion(p.method):
            return 1
        if p.slice_batch:
            return int(p.slice_batch)
        dev = str(getattr(prior_device(self.prior), "type", "cpu"))
        return AUTO_SLICE_BATCH_CUDA if dev == "cuda" else 1

    def check(self, acquisitions: Iterable) -> list[SliceKey]:
        """Assemble without reconstructing: validates the stream (coils, NaN/Inf, ACS) → slice keys in order."""
        asm = Assembler(self.geom)
        keys = []
        for acq in acquisitions:
            keys += [self._check_acs(sd) for sd in asm.add(acq)]
        keys += [self._check_acs(sd) for sd in asm.flush()]
        return keys

    @staticmethod
    def _check_acs(sd: SliceData) -> SliceKey:

        cy, cx = calib_region(acs_mask(sd.calib.shape[-2:], sd.acs_rows))
        if min(cy, cx) < 3:
            raise InputError(f"no usable ACS in slice {sd.key.slice}: the calibration region is {cy}×{cx}")
        return sd.key

    def process_buffer(self, kspace: np.ndarray, headers: list, ref: np.ndarray | None = None) -> list:
        """Reconstruct one assembled buffer (Gadgetron ReconData path; noise adjust and oversampling removal
        already done upstream).

        kspace (C, ny, nx) complex, un-acquired lines zero; headers: AcquisitionHeaders of the acquired
        lines (geometry + counters taken from the one nearest the centre line); ref: optional (C, ny, nx)
        calibration k-space (zero rows = not acquired), else the ACS is the fully sampled centre of kspace.
        """
        ksp = np.asarray(kspace)
        if ksp.ndim != 3 or not np.iscomplexobj(ksp):
            raise InputError(f"kspace: expected complex (C, ny, nx), got {ksp.dtype} {ksp.shape}")
        if not np.isfinite(ksp).all():
            raise InputError("kspace contains NaN/Inf")
        if not headers:
            raise InputError("process_buffer needs the acquisition headers of the buffer (got none)")
        C, ny, nx = ksp.shape
        if max(ny, nx) > self.params.max_matrix:
            raise InputError(f"matrix {nx}x{ny} exceeds the cap max_matrix={self.params.max_matrix}")
        ksp = ksp.astype(np.complex64)
        rows = np.abs(ksp).sum(axis=(0, 2)) > 0
        calib, ref_rows = ksp, None
        if ref is not None:
            calib = np.asarray(ref).astype(np.complex64)
            if calib.shape != ksp.shape:
                raise InputError(f"ref: expected shape {ksp.shape} like kspace, got {calib.shape}")
            ref_rows = np.abs(calib).sum(axis=(0, 2)) > 0
            if not ref_rows.any():
                raise InputError("no ACS: the reference (calibration) buffer is empty")
        lo, hi, source = locate_acs(rows, ny // 2, ref_rows, where="the buffer")
        head = min(headers, key=lambda h: abs(int(h.idx.kspace_encode_step_1) - self.geom.center_line))
        sd = SliceData(slice_key(head), ksp, np.repeat(rows[:, None], nx, axis=1), calib, (lo, hi), source, head,
                       min(self.geom.keep_rows, ny), rec_shape=self.geom.rec_shape)
        return self.reconstruct(sd)

    # ------------------------------------------------------------------ one slice
    def reconstruct(self, sd: SliceData) -> list:
        """SliceData → list of ismrmrd.Image (series per params.send_*)."""
        return self.reconstruct_many([sd])

    def reconstruct_many(self, sds: list) -> list:
        """Several SliceData (reconstructed together: `reconstruct_arrays_many`) → their ismrmrd.Images, slice by
        slice in the given order."""
        p = self.params
        imgs: list = []
        for res in self.reconstruct_arrays_many(sds):
            meta = self.image_meta(res)
            series_index = self._next_index(res.key)
            imgs += slice_images(res.image, res.head, self.geom.fov_mm, series_index, meta, std=res.std,
                                 error=res.error, zerofilled=res.zerofilled, send_magnitude=p.send_magnitude,
                                 send_phase=p.send_phase, send_std=p.send_std, send_zerofilled=p.send_zerofilled,
                                 fmt=p.image_format, bits=p.bits_stored)
            if self.on_slice is not None:
                self.on_slice(res)
        return imgs

    def _next_index(self, key: SliceKey) -> int:
        n = self._index.get(0, 0) + 1
        self._index[0] = n
        return n

    def image_meta(self, res: SliceResult) -> dict:
        p = self.params
        meta = {
            "method": p.method,
            "model": self.model_name(),
            "prompt": res.prompt,
            "metadata": json.dumps(res.record.to_dict(), sort_keys=True),
            "acs_source": res.acs_source,
            "calibration_coverage": round(float(res.calibration.get("coverage", float("nan"))), 4),
            "calibration_acs_lines": int(res.calibration.get("acs_lines", 0)),
            "espirit_crop": float(res.calibration.get("crop", float("nan"))),
            "coil_maps": str(res.calibration.get("maps", "espirit")),
            **({"coil_maps_fallback": res.calibration["fallback"]} if res.calibration.get("fallback") else {}),
            **({"prior_domain_warning": self.domain_warning} if self.domain_warning else {}),
        }
        pf = res.acquisition.get("partial_fourier")
        if pf:
            meta["partial_fourier"] = ", ".join(f"{k} {v:g}" for k, v in pf.items()) + (
                ": unacquired k-space zero" if p.method == "zerofilled" else
                ": unacquired k-space by phase-constrained POCS (10 iterations) from the "
                + ("prior's estimate under data consistency" if is_diffusion(p.method) else "reconstruction"))
        cc = res.acquisition.get("coil_compression")
        if cc:
            meta["coil_compression"] = (f"{cc['coils']} → {cc['virtual_coils']} virtual coils "
                                        f"({100 * cc['energy']:.1f} % of the calibration energy)")
        if is_diffusion(p.method):
            meta.update({"NFE": getattr(p, get_spec(p.method).nfe_field), "CFG": p.cfg, "seed": p.seed,
                         "samples": p.samples, "eta": p.eta,
                         "gamma": p.gamma, "cg_iters": p.cg_iters, "precision": res.precision or p.precision,
                         "conditioning": "unconditional" if p.cfg == 0 else "conditional",
                         "sampler": json.dumps(p.sampler().to_meta(), sort_keys=True)})
            info = res.sampler_info
            if "self_validation" in info:
                sv = info["self_validation"]
                meta["self_validation"] = json.dumps(sv, sort_keys=True)
                meta["reconstruction"] = sv.get("chosen", p.method)
                if "reason" in sv:
                    meta["self_validation_reason"] = sv["reason"]
                if "prior_unsure" in sv:   # a classical image returned: the prior is not trusted on this scan
                    meta["prior_unsure"] = sv["prior_unsure"]
            if "noise_sigma" in info:
                meta["noise_sigma"], meta["gamma_used"] = info["noise_sigma"], info["gamma"]
            if "engine" in info:
                meta["engine"] = info["engine"]
            if res.uncertainty:   # samples > 1: the calibrated error estimate (issue 27)
                u = res.uncertainty
                meta["error_estimate"] = u["error_estimate"]
                meta["expected_rmse"] = f"{u['expected_rmse']:.6g}"
                meta["expected_psnr_db"] = f"{u['expected_psnr_db']:.2f}"
                if "holdout_scale" in u:
                    meta["error_holdout_scale"] = f"{u['holdout_scale']:.4g}"
        else:
            meta.update({"NFE": 0, "CFG": 0, "seed": p.seed})
        return meta

    def _method_for_slice(self, p) -> tuple:
        """(method, sampler config, reused self-validation info or None) for the next slice. With self-validation
        on, the first `selfval_slices` slices of the series choose by their held-out lines; the rest reuse the
        majority choice (DDS with its settings, or the classical method) without holding anything out."""
        config = p.sampler()
        if not (is_diffusion(p.method) and get_spec(p.method).validated and p.self_validate):
            return p.method, config, None
        reuse = reuse_choice(self._sv_votes, config, p.selfval_slices)
        return (p.method, config, None) if reuse is None else reuse

    def _check_prior_domain(self, shape, record, head=None) -> None:
        """Say so (once per session, log + image meta) when the scan lies outside the prior's training
        domain: pixel size (or matrix), orientation, phase-encoding direction, anatomy, contrast, nominal
        field strength, field of view (`recon_core.prior.domain`)."""
        if self._domain_warned:
            return
        prior = self.prior
        issues = domain_warnings(domain_of(prior), record, self.geom.fov_mm, shape,
                                 int(getattr(prior, "resolution", 0) or 0) or None, head=head)
        if issues:
            self._domain_warned = True
            self.domain_warning = "; ".join(issues) + f": quality is not what the evaluation measured ({ADVICE})"
            log.warning(self.domain_warning)

    def record_for(self, slice_index: int):
        """MetadataRecord of slice `slice_index` from the header + params overrides."""
        return record_from_header(self.header, slice_index=slice_index, overrides=self.params.overrides())

    def reconstruct_arrays(self, sd: SliceData) -> SliceResult:
        """Maps, record/prompt and the reconstruction of one slice (no Image building)."""
        return self.reconstruct_arrays_many([sd])[0]

    def reconstruct_arrays_many(self, sds: list) -> list:
        """`reconstruct_arrays` of several slices: per slice the coil maps, record and prompt; then the
        reconstruction, diffusion slices of one shape in one sampler call (per-slice noise, scale and CG: the
        same image as alone, up to the network's batch numerics); then per slice POCS, scanner units and the
        error estimate. Slices that self-validate run one by one (each vote steers the next slice)."""
        preps = [self._prepare(sd) for sd in sds]
        p = self.params
        out: list = []
        i = 0
        while i < len(preps):
            method, config, reused = self._method_for_slice(p)
            n = 1
            if is_diffusion(method) and not config.self_validate:
                shape = preps[i]["sd"].kspace.shape
                while i + n < len(preps) and preps[i + n]["sd"].kspace.shape == shape:
                    n += 1
            out += self._recon(preps[i:i + n], method, config, reused)
            i += n
        return out

    def _prepare(self, sd: SliceData) -> dict:
        """Coil compression, ESPIRiT maps, record and prompt of one slice (timed)."""
        p = self.params
        t0 = time.perf_counter()
        sd, cc = compress_slice(sd, p.coil_energy, p.virtual_coils, p.compress_coils_above)
        acq = {**({"coil_compression": cc} if cc else {}),
               **({"partial_fourier": sd.partial_fourier} if sd.partial_fourier else {})}
        calq: dict = {}
        maps = slice_maps(sd, backend="torch", info=calq)
        if calq.get("fallback"):
            log.warning("slice %d: %s; using low-resolution coil maps (smoother, less exact than ESPIRiT: "
                        "acquire more calibration lines)", sd.key.slice, calq["fallback"])
        elif calq["coverage"] < COVERAGE_WARN:
            log.warning("slice %d: the coil maps cover only %.1f %% of the calibration image's signal energy "
                        "(%d ACS lines); object outside the ESPIRiT support is lost — acquire more calibration "
                        "lines or check the FOV", sd.key.slice, 100 * calq["coverage"], calq["acs_lines"])
        if sd.partial_fourier and not self._pf_warned:
            self._pf_warned = True
            log.warning("partial Fourier (%s): the unacquired k-space is completed by phase-constrained POCS from "
                        "the reconstruction (DDS: from the prior's estimate under data consistency; zero-filled: zero)",
                        ", ".join(f"{k} {v:g}" for k, v in sd.partial_fourier.items()))
        record = self.record_for(sd.key.slice)
        return {"sd": sd, "acq": acq, "calq": calq, "maps": maps, "record": record, "prompt": build_prompt(record),
                "espirit_s": time.perf_counter() - t0}

    def _recon(self, preps: list, method: str, config, reused) -> list:
        """Reconstruct prepared slices with one method and config (diffusion: one sampler call for all)."""
        p = self.params
        t1 = time.perf_counter()
        B = len(preps)
        stds, errs, uncs, infos = [None] * B, [None] * B, [{} for _ in range(B)], [{} for _ in range(B)]
        precision = None
        if is_diffusion(method):
            for pr in preps:
                self._check_prior_domain(pr["sd"].kspace.shape[-2:], pr["record"], pr["sd"].head)
            res = sample_slices(method, self.prior, [pr["sd"].kspace for pr in preps], [pr["maps"] for pr in preps],
                                [pr["sd"].mask for pr in preps],
                                None if p.cfg == 0 else [pr["record"] for pr in preps], config, device=p.device,
                                progress=True if get_spec(method).slow else None)
            precision = res.timings.get("precision")
            images = list(np.asarray(res.image))
            infos = [_sampler_info(res.timings, b) for b in range(B)]
            if res.std is not None:
                em = error_model_of(self.prior)
                stds = list(np.asarray(res.std, dtype=np.float32))
                for b, pr in enumerate(preps):
                    accel = realised_accel(pr["sd"].mask)
                    errs[b] = error_estimate(stds[b], config.samples, accel, em)
                    uncs[b] = {"error_estimate": em.describe(config.samples, accel), "calibrated": em.calibrated}
                    self._holdout_rescale(b, errs, uncs, infos[b], reused, em, accel)
        else:
            images = [np.asarray(baselines.reconstruct(method, pr["sd"].kspace[None], pr["maps"][None],
                                                       pr["sd"].mask))[0] for pr in preps]
        t_share = (time.perf_counter() - t1) / B
        return [self._finish(pr, images[b], stds[b], errs[b], uncs[b], infos[b], precision, method, reused, t_share)
                for b, pr in enumerate(preps)]

    def _holdout_rescale(self, b: int, errs: list, uncs: list, info: dict, reused, em, accel: float) -> None:
        """Scale slice b's error map by the self-validation's hold-out ratio (`ErrorModel.holdout_scale`): its own
        when it validated, else the median of the series' validating slices' (a reused choice); said in meta."""
        sv = info.get("self_validation") or {}
        ratio, whose = sv.get("holdout_error_ratio"), "this slice's"
        if ratio is None and reused is not None and self._sv_ratios:
            ratio, whose = float(np.median(self._sv_ratios)), "the series' first slices'"
        errs[b], f = holdout_rescaled(errs[b], ratio, accel, em)
        if f is None:
            return
        uncs[b]["holdout_scale"] = round(f, 4)
        uncs[b]["error_estimate"] += (f"; × {f:.2f} from {whose} held-out k-space (residual {ratio:.2f} × the "
                                      f"independent-pixel prediction, simulator {em.holdout_scale_ref(accel):.2f}; "
                                      f"max(1, ratio)^{em.holdout_alpha:g}, fitted on {em.holdout_fitted_on})")

    def _finish(self, pr: dict, image, std, err, unc: dict, sampler_info: dict, precision, method: str, reused,
                t_recon: float) -> SliceResult:
        """Partial-Fourier completion, self-validation bookkeeping, scanner units, expected error of one slice."""
        p, sd, maps = self.params, pr["sd"], pr["maps"]
        t2 = time.perf_counter()
        if sd.partial_fourier and method != "zerofilled":   # the missing side by phase-constrained POCS
            image = pocs(image, sd.kspace, maps, sd.mask)
        if reused is not None:
            sampler_info["self_validation"] = reused
        elif "self_validation" in sampler_info and "chosen" in sampler_info["self_validation"]:
            self._sv_votes.append(sampler_info["self_validation"]["chosen"])
            if "holdout_error_ratio" in sampler_info["self_validation"]:
                self._sv_ratios.append(sampler_info["self_validation"]["holdout_error_ratio"])
        zf = None
        ksp = sd.kspace[None]
        if p.send_zerofilled:
            zf = np.asarray(baselines.reconstruct("zerofilled", ksp, maps[None], sd.mask))[0].astype(np.complex64)
        # scanner units (unit-norm maps of the unwhitened physical coils) on the reconSpace matrix
        image, std, zf, err = scanner_units(sd, maps, image.astype(np.complex64), std, zf, err)
        if err is not None:   # the per-slice expected RMS error inside the head (object region of the image)
            rmse = expected_rmse(err, object_region(np.abs(image)))
            unc.update(expected_rmse=rmse, expected_psnr_db=float(20 * np.log10(np.abs(image).max() / rmse))
                       if rmse > 0 else float("inf"))
        t_recon += time.perf_counter() - t2
        return SliceResult(sd.key, image, std, zf, maps.astype(np.complex64), pr["record"], pr["prompt"],
                           sd.acs_source, sd.head, {"espirit": pr["espirit_s"], "recon": t_recon}, precision,
                           pr["calq"], sampler_info, pr["acq"], err, unc)
