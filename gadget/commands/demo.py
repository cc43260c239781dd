"""`contextmri demo [--out DIR]`: simulate an accelerated brain scan, replay it, compare methods.

Simulates 4 slices, 128², 8 coils, uniform1d ×4 (2× readout oversampling, correlated coil noise with
noise readouts, calibration-flagged ACS), writes DIR/raw.h5, replays it through the stream processor
with zero-filled, the strongest classical method available (BART `pics` L1-wavelet when the `bart`
binary is installed, else the cycle-spinning L1-wavelet), DDS unconditional and DDS conditional (with posterior samples for an
uncertainty map), and writes DIR/images.h5, DIR/panel.png and DIR/metrics.json; prints PSNR/SSIM.
With `--real RAW.h5` (default: the in-vivo brain in tests/data/real when present) a second panel,
DIR/real_panel.png, shows that fully sampled real scan retrospectively undersampled (random ×4, 8 % centre):
its root-sum-of-squares, zero-filled, the classical method, DDS conditional and what the front doors return on it
(self-validated, on by default there: the choice is in the panel), scored inside the head.
"""

NAME = "demo"
HELP = "simulate a short accelerated brain scan, reconstruct it (zero-filled, BART/GRAPPA, DDS) and compare"

METHODS = ("zerofilled", "classical", "dds_uncond", "dds_cond")
LABELS = {"reference": "reference", "zerofilled": "zero-filled", "classical": "classical",
          "dds_uncond": "DDS uncond", "dds_cond": "DDS cond"}


def strongest_classical() -> tuple[str, str]:
    """(method, label) of the strongest classical reconstruction available here: BART `pics` L1-wavelet
    (the strongest in the evaluation) when the `bart` binary is installed, else the cycle-spinning L1-wavelet
    (the same algorithm without BART, within ±0.2 dB of it on the real brains: training/RUNS.md)."""
    from recon_core.baselines import bart

    return ("bart-w", "BART pics W") if bart.available() else ("l1wavelet-shift", "L1-wavelet (cycle spinning)")


def add_arguments(parser):
    parser.add_argument("--out", default="demo_out", metavar="DIR", help="output directory (created)")
    parser.add_argument("--model", default="default", help="'default' (shipped model) or a saved prior directory")
    parser.add_argument("--contrast", default="T2", help="simulated contrast (T1, T1POST, T2, FLAIR, PD, ...)")
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--matrix", type=int, default=128)
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--accel", type=float, default=4.0, help="uniform1d acceleration")
    from recon_core.samplers import SamplerConfig

    # the sampler flags of every command; the demo's own default: 2 posterior samples per DDS run (their
    # mean is the image; the conditional run's std is the uncertainty map). --seed also seeds the simulation.
    SamplerConfig.add_arguments(parser, defaults={"samples": 2})
    parser.add_argument("--real", default=None, metavar="RAW.h5",
                        help="a fully sampled real raw file for the real-data panel (default: the in-vivo brain in "
                             "tests/data/real when present; 'none' to skip)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")


def _panel(path, ref, recs, err, std, scores):
    """PNG: one row per slice; reference | methods | |error| (DDS cond) | uncertainty (DDS cond)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = ["reference"] + list(METHODS) + ["|error|", "uncertainty"]
    S = ref.shape[0]
    fig, axes = plt.subplots(S, len(cols), figsize=(1.9 * len(cols), 1.9 * S + 0.5), squeeze=False)
    for s in range(S):
        vmax = float(np.percentile(np.abs(ref[s]), 99.5)) or 1.0
        panels = [np.abs(ref[s])] + [np.abs(recs[m][s]) for m in METHODS] + [err[s], std[s]]
        for j, (name, img) in enumerate(zip(cols, panels)):
            ax = axes[s, j]
            ax.axis("off")
            if name == "|error|":
                ax.imshow(img, cmap="magma", vmin=0, vmax=vmax / 5)
            elif name == "uncertainty":
                ax.imshow(img, cmap="magma", vmin=0, vmax=(float(np.percentile(img, 99.5)) or 1.0))
            else:
                ax.imshow(img, cmap="gray", vmin=0, vmax=vmax)
            if s == 0:
                ax.set_title(LABELS.get(name, name) + (" (×5)" if name == "|error|" else ""), fontsize=8)
            if name in scores:
                ax.text(2, img.shape[0] - 4, f"{scores[name]['psnr'][s]:.1f} dB", color="yellow", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def _replay_methods(raw, runs: dict, prior, samples: int, quiet: bool):
    """Replay `raw` once per ReconParams in `runs` → (images per method (S, ny, nx) in slice order, image
    groups for images.h5, seconds per method, the conditional run's slice-0 prompt, its std map)."""
    import time

    import numpy as np

    from gadget.replay import replay

    recs, groups, times, prompt, std = {}, {}, {}, "", None
    for name, params in runs.items():
        t0 = time.perf_counter()
        res = replay(raw, None, params, prior=prior, progress=not quiet)
        times[name] = time.perf_counter() - t0
        order = sorted(range(len(res.results)), key=lambda i: res.results[i].key.slice)
        recs[name] = np.stack([res.results[i].image for i in order])
        if name == "dds_cond":
            std = (np.stack([res.results[i].std for i in order]) if samples > 1
                   else np.zeros(recs[name].shape, np.float32))
            prompt = res.results[order[0]].prompt
        groups["images" if name == "dds_cond" else name] = res.images
        print(f"  {LABELS[name]:<12} {times[name]:6.1f} s")
    return recs, groups, times, prompt, std


def _default_real() -> str | None:
    import os

    p = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "real", "pulseq_invivo_flash.h5")
    return os.path.abspath(p) if os.path.exists(p) else None


def _real_panel(path, raw, prior, dds, classical: str, label: str, spec: str = "uniform1d:4:0.08") -> dict:
    """PNG of one fully sampled real slice undersampled by `spec`: RSS | zero-filled | classical | DDS cond | what the
    front doors return (self-validated, its choice in the title), PSNR/SSIM inside the head
    (recon_core.raw.retrospective); returns the scores and the self-validation's choice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from recon_core import baselines
    from recon_core.fft import ifft2c_np
    from recon_core.metrics import masked_metrics
    from recon_core.raw.image import scanner_units
    from recon_core.raw.retrospective import load_real, undersample
    from recon_core.samplers import reconstruct_slice as diffusion

    rs = load_real(raw)[0]
    sd, m = undersample(rs.sd, spec, seed=dds.seed)
    img, maps, _ = diffusion(sd, rs.header, prior, dds)
    recs = {"zero-filled": np.sqrt((np.abs(ifft2c_np(sd.kspace)) ** 2).sum(0)),
            label: scanner_units(sd, maps, np.asarray(baselines.reconstruct(classical, sd.kspace[None], maps[None],
                                                                            sd.mask))[0]),
            "DDS cond": scanner_units(sd, maps, img)}
    sv_img, _, sv_info = diffusion(sd, rs.header, prior, dds.replace(self_validate=True))
    chosen = (sv_info.get("self_validation") or {}).get("chosen") or "dds"
    sv_label = f"self-validated ({chosen})"
    recs[sv_label] = scanner_units(sd, maps, sv_img)
    scores = {k: masked_metrics(rs.reference, v, rs.region) for k, v in recs.items()}
    fig, axes = plt.subplots(1, 5, figsize=(10.5, 2.6))
    vmax = float(np.percentile(rs.reference[rs.region], 99.5))
    for ax, (name, im) in zip(axes, [("reference (RSS, full, unbiased)", rs.reference)] + list(recs.items())):
        ax.imshow(np.abs(im), cmap="gray", vmin=0, vmax=vmax)
        ax.axis("off")
        ax.set_title(name, fontsize=8)
        if name in scores:
            ax.text(2, im.shape[0] - 4, f"{scores[name]['psnr']:.1f} dB / {scores[name]['ssim']:.2f}", color="yellow",
                    fontsize=6)
    fig.suptitle(f"real: {rs.name}, {spec} (R {m.accel:.1f}); PSNR/SSIM inside the head", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return {"file": raw, "mask": spec, "accel": float(m.accel), "self_validation": chosen,
            "scores": {k: {"psnr": v["psnr"], "ssim": v["ssim"]} for k, v in scores.items()}}


def _reference_group(scan) -> list:
    """The simulator's ground truth as magnitude ISMRMRD images (DataRole Reference), one per slice."""
    import numpy as np

    from gadget.images import make_image
    from recon_core.sim.scan import reference_images

    out = []
    for im in reference_images(scan):
        out.append(make_image(np.abs(im.data[0, 0]), "magnitude", None, im.field_of_view, im.slice + 1,
                              {"DataRole": "Reference"}))
        out[-1].slice = im.slice
        out[-1].position[:] = im.position
    return out


def _publish(work: str, out: str, names) -> None:
    """Move the finished files from the private work directory into --out (umask permissions)."""
    import os

    from gadget.replay import _default_mode

    for name in names:
        os.chmod(os.path.join(work, name), _default_mode(0o666))
        os.replace(os.path.join(work, name), os.path.join(out, name))


def _check_out(path: str) -> str:
    import os

    from recon_core.errors import InputError

    out = os.path.abspath(path)
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise InputError(f"--out {path!r}: parent directory {parent!r} does not exist")
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {path!r} exists and is not a directory")
    return out


def run(args):
    import json
    import os
    import shutil
    import tempfile
    import time

    import numpy as np

    from gadget.params import ReconParams
    from gadget.replay import _write_images_h5
    from recon_core.device import set_threads
    from recon_core.metrics import psnr, ssim
    from recon_core.prior.cache import get_prior
    from recon_core.samplers import SamplerConfig
    from recon_core.sim import simulate_scan, write_scan

    set_threads(args.threads)
    dds = SamplerConfig.from_args(args)
    t_start = time.perf_counter()
    out = _check_out(args.out)
    # the model first: a missing default model is the most likely problem, say so before any work
    prior = get_prior(args.model, args.device)
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".demo-", dir=out)
    try:
        print(f"demo: simulating {args.slices} slice(s) {args.matrix}², {args.coils} coils, uniform1d ×{args.accel:g} "
              f"({args.contrast}, seed {dds.seed})")
        scan = simulate_scan(args.contrast, n_slices=args.slices, matrix=args.matrix, coils=args.coils,
                             mask="uniform1d", accel=args.accel, seed=dds.seed)
        raw_tmp = write_scan(os.path.join(work, "raw.h5"), scan)
        classical, LABELS["classical"] = strongest_classical()
        common = dict(model=args.model, device=args.device, max_matrix=max(512, args.matrix))
        runs = {
            "zerofilled": ReconParams(method="zerofilled", seed=dds.seed, **common),
            "classical": ReconParams(method=classical, seed=dds.seed, **common),
            # same number of posterior samples for both DDS runs: a fair cond-vs-uncond comparison
            "dds_uncond": ReconParams(method="dds", **{**dds.to_meta(), "cfg": 0.0}, **common),
            "dds_cond": ReconParams(method="dds", **dds.to_meta(), send_std=dds.samples > 1, **common),
        }
        recs, groups, times, prompt, std = _replay_methods(raw_tmp, runs, prior, dds.samples, args.quiet)
        ref = scan.reference
        scores = {name: {"psnr": [float(v) for v in np.atleast_1d(psnr(ref, recs[name]))],
                         "ssim": [float(v) for v in np.atleast_1d(ssim(ref, recs[name]))]} for name in METHODS}
        err = np.abs(np.abs(recs["dds_cond"]) - np.abs(ref))
        groups["reference"] = _reference_group(scan)
        _write_images_h5(os.path.join(work, "images.h5"), scan.xml, groups)
        _panel(os.path.join(work, "panel.png"), ref, recs, err, std, scores)
        summary = {"convention": "fastmri (magnitude, data_range = max |reference|)", "prompt_slice0": prompt,
                   "model": args.model, "nfe": dds.nfe, "cfg": dds.cfg, "samples": dds.samples,
                   "classical": {"method": classical, "label": LABELS["classical"]},
                   "sampler": dds.to_meta(), "seconds": times, "scores": scores,
                   "geometry": {"slices": args.slices, "matrix": args.matrix, "coils": args.coils,
                                "mask": "uniform1d", "accel": args.accel}}
        files = ["raw.h5", "images.h5", "panel.png", "metrics.json"]
        real = _default_real() if args.real is None else (None if args.real == "none" else args.real)
        if real:
            summary["real"] = _real_panel(os.path.join(work, "real_panel.png"), real, prior, dds, classical,
                                          LABELS["classical"])
            files.append("real_panel.png")
        with open(os.path.join(work, "metrics.json"), "w") as f:
            json.dump(summary, f, indent=2)
        _publish(work, out, files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"prompt (slice 0): {prompt!r}")
    print(f"{'method':<12} {'PSNR dB':>8} {'SSIM':>7}   (mean over {args.slices} slices; fastMRI convention)")
    for name in METHODS:
        sc = scores[name]
        print(f"{LABELS[name]:<12} {np.mean(sc['psnr']):8.2f} {np.mean(sc['ssim']):7.4f}")
    if "real" in summary:
        r = summary["real"]
        print(f"real scan {os.path.basename(r['file'])}, {r['mask']}: " + ", ".join(
            f"{k} {v['psnr']:.2f} dB / {v['ssim']:.3f}" for k, v in r["scores"].items()) + " (inside the head)")
    print(f"wrote {out}/images.h5, panel.png, metrics.json, raw.h5{', real_panel.png' if 'real' in summary else ''} "
          f"({time.perf_counter() - t_start:.0f} s)")
    return 0
