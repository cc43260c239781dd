"""`precision: auto`: choose the network's autocast precision by measuring, never by a fixed default.

CPUs differ between machines: on an Intel Xeon with AMX, bf16 autocast measured 2.3× faster for a
training step and 1.5–1.8× for inference; on an AMD EPYC it was no faster. So "auto" runs a short timed
trial of the real workload (`trial(precision)`, e.g. one forward of the prior at the batch it will use)
in fp32 and bf16 and picks bf16 only where it is at least `min_speedup` faster *and* its output stays
close to fp32's (relative RMS difference ≤ `max_rel_diff`; the PSNR effect is measured by `contextmri
bench`'s precision sweep). On CUDA the candidates are fp32 and bf16 as well (fp16 is never picked
automatically: ε-prediction overflows are a known fp16 trap).

The choice is cached per (CPU/GPU model, torch version, workload key) in
`$CONTEXTMRI_CACHE_DIR/precision.json` (default `~/.cache/contextmri`), so a gadget does not re-measure at
every connection; `CONTEXTMRI_PRECISION_CACHE=0` disables the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .errors import InputError
from .io_utils import write_text_atomic
from .prior.engine import ENGINE_PRECISIONS, ENGINES, check_engine, engines_for, runner_for, runs_unet
from .settings import DTYPE_PRECISIONS, PRECISIONS

PRECISION_CHOICES = PRECISIONS
_MEMO: dict = {}   # this process's choices (the file cache is read once per workload, not once per slice)


@dataclass
class PrecisionChoice:
    """The chosen precision and why: measured seconds per trial call, relative difference bf16 vs fp32."""
    precision: str
    requested: str
    seconds: dict = field(default_factory=dict)
    rel_diff: float | None = None
    source: str = "fixed"          # fixed | measured | cache
    hardware: str = ""
    engine: str = "torch"          # the runtime of the network (recon_core.prior.engine)
    failed: dict = field(default_factory=dict)   # engines the trial could not run, with why
    runner: object = field(default=None, repr=False, compare=False)   # the engine object (not in meta)

    def to_meta(self) -> dict:
        d = asdict(replace(self, runner=None))
        d.pop("runner")
        return d

    def describe(self) -> str:
        if self.source == "fixed":
            return f"precision {self.precision} (as requested)"
        sec = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in self.seconds.items())
        diff = f", rel. diff {self.rel_diff:.2e}" if self.rel_diff is not None else ""
        what = self.precision if self.engine == "torch" else f"{self.engine} {self.precision}"
        return f"precision auto → {what} ({self.source}: {sec}{diff}; {self.hardware})"


def check_precision(name: str) -> str:
    """Validate a precision name (auto|fp32|bf16|fp16); returns it lower-cased."""
    p = str(name).lower() if name is not None else ""
    if p not in PRECISION_CHOICES:
        raise InputError(f"unknown precision {name!r}: expected one of {', '.join(PRECISION_CHOICES)}")
    return p


def hardware_id(device) -> str:
    """A string naming the processor the trial ran on (CPU model name or CUDA device name)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return "cuda:" + torch.cuda.get_device_name(dev)
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu:{name or platform.processor() or platform.machine()}:{torch.get_num_threads()}t"


def _cache_path() -> Path:
    base = os.environ.get("CONTEXTMRI_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "contextmri")
    return Path(base) / "precision.json"


def _cache_read() -> dict:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _cache_write(data: dict) -> None:

    try:
        write_text_atomic(_cache_path(), json.dumps(data, indent=1, sort_keys=True))
    except OSError:
        pass  # the cache is an optimisation only


def _time(fn, reps: int) -> tuple[float, object]:
    out = fn()  # warm-up (allocations, oneDNN kernel selection)
    t0 = time.perf_counter()
    for _ in range(reps):
        out = fn()
    return (time.perf_counter() - t0) / reps, out


def _rel_diff(a, b) -> float:

    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    return float((a - b).norm() / a.norm().clamp_min(1e-12))


def choose_precision(requested: str, device, trial, key: str, reps: int = 2, min_speedup: float = 1.1,
                     max_rel_diff: float = 0.02, log=None) -> PrecisionChoice:
    """Resolve `requested` ("auto" or a fixed name) for the workload `trial`.

    trial(precision) -> tensor: runs the workload once under that precision (it must be deterministic for a
    fixed input, touch no global RNG state) and returns its output (or None: no accuracy check). `key` names the
    workload (e.g. "dds:<model hash>:b2:128") for the cache. Returns a PrecisionChoice; `log` (callable) receives
    its one-line description. The eager-torch case of `choose_runtime`: same rule (`_pick`), same cache."""
    req = check_precision(requested)
    hw = hardware_id(device)
    if req != "auto":
        return PrecisionChoice(precision=req, requested=req, source="fixed", hardware=hw)
    ckey = f"{hw}|torch {torch.__version__}|{key}"
    ch = _lookup(ckey, req, hw)
    if ch is None:
        cands = [("torch", "fp32"), ("torch", "bf16")]
        seconds, outs = {}, {}
        for c in cands:
            seconds[c], outs[c] = _time(lambda: trial(c[1]), reps)
        ref = outs[cands[0]]
        diffs = {c: None if ref is None or outs[c] is None else _rel_diff(ref, outs[c]) for c in cands}
        best = _pick(cands, seconds, diffs, min_speedup, max_rel_diff)
        ch = PrecisionChoice(precision=best[1], requested=req, seconds={p: seconds[(e, p)] for e, p in cands},
                             rel_diff=diffs[cands[1]], source="measured", hardware=hw)
        _remember(ckey, ch)
    if log:
        log(ch.describe())
    return ch


def _cache_on() -> bool:
    return os.environ.get("CONTEXTMRI_PRECISION_CACHE", "1") != "0"


def _lookup(ckey: str, req: str, hw: str) -> PrecisionChoice | None:
    """A remembered choice for `ckey`: this process's, else the file cache's (source "cache"), else None."""
    if ckey in _MEMO:
        return replace(_MEMO[ckey], source="cache")
    hit = _cache_read().get(ckey) if _cache_on() else None
    if not (isinstance(hit, dict) and hit.get("precision") in DTYPE_PRECISIONS
            and hit.get("engine", "torch") in ENGINES):
        return None
    ch = PrecisionChoice(precision=hit["precision"], requested=req, seconds=hit.get("seconds", {}),
                         rel_diff=hit.get("rel_diff"), source="cache", hardware=hw, engine=hit.get("engine", "torch"))
    _MEMO[ckey] = ch
    return ch


def _remember(ckey: str, ch: PrecisionChoice) -> None:
    """Keep a measured choice for this process and (unless disabled) in the file cache."""
    _MEMO[ckey] = replace(ch, runner=None)
    if _cache_on():
        data = _cache_read()
        data[ckey] = {"precision": ch.precision, "engine": ch.engine, "seconds": ch.seconds, "rel_diff": ch.rel_diff,
                      "measured": time.time()}
        _cache_write(data)


def _pick(cands, seconds: dict, diffs: dict, min_speedup: float, max_rel_diff: float):
    """The rule of every "auto": the fastest candidate whose output stays within `max_rel_diff` of the reference
    (cands[0], eager fp32; a None difference: not checked), taken only if it is at least `min_speedup` faster
    than the reference."""
    base = cands[0]
    ok = [c for c in cands if c == base or diffs[c] is None or diffs[c] <= max_rel_diff]
    best = min(ok, key=lambda c: seconds[c])
    return best if seconds[base] / max(seconds[best], 1e-12) >= min_speedup else base


def prior_key(prior) -> str:
    """A short workload key for a prior's architecture (config hash, resolution)."""
    cfg = json.dumps(getattr(prior, "manifest", {}).get("config", {}), sort_keys=True, default=str)
    return hashlib.sha1(cfg.encode()).hexdigest()[:12]


TRIAL_BATCH = 2   # cond + uncond of one slice: the inference trial's batch, whatever the caller's batch


def runtime_candidates(precision: str, engine: str, device) -> list:
    """The (engine, precision) pairs a request allows on `device`: `auto` precision → fp32 and bf16 (fp16 only when
    asked for), `auto` engine → every engine installed that runs there (recon_core.prior.engine)."""
    dev = torch.device(device)
    engines = engines_for(dev) if engine == "auto" else (engine,)
    precs = ("fp32", "bf16") if precision == "auto" else (precision,)
    return [(e, p) for e in engines for p in precs if p in ENGINE_PRECISIONS[e]]


def choose_runtime(prior, precision: str, engine: str, shape, device, log=None, reps: int = 2,
                   min_speedup: float = 1.1, max_rel_diff: float = 0.02) -> PrecisionChoice:
    """The network's runtime for the prior's guided forward on inputs of `shape` (ny, nx) (a latent prior's: the
    latent's (h, w)): an engine (torch | torch-cl | onnxruntime | openvino | openvino-streams) and a precision,
    either as asked or — `auto` — measured: each allowed (engine, precision) runs TRIAL_BATCH forwards of the real
    workload; the fastest whose output stays within `max_rel_diff` (relative RMS) of eager fp32 is chosen if it is at least `min_speedup`
    faster than the reference candidate (torch fp32 when allowed), else the reference. One choice per (model,
    shape, request, machine), cached like `choose_precision`, so every batch of slices runs the same runtime and a
    slice's result does not depend on its batch. The returned choice carries the engine object (`runner`)."""
    req_p = check_precision(precision)
    dev = torch.device(device)
    req_e = check_engine(engine, dev)
    if not runs_unet(prior):     # a wrapper or a prior computing ε otherwise: only its own predict_eps will do
        if req_e not in ("auto", "torch"):
            raise InputError(f"engine {req_e} runs the prior's UNet, but this prior ({type(prior).__name__}) computes "
                             "ε otherwise; use engine torch")
        req_e = "torch"
    cands = runtime_candidates(req_p, req_e, dev)
    if not cands:
        raise InputError(f"engine {req_e} cannot run {req_p} (engine auto, or precision "
                         f"{'/'.join(ENGINE_PRECISIONS.get(req_e, ('fp32',)))})")
    hw = hardware_id(dev)
    if len(cands) == 1:
        e, p = cands[0]
        return PrecisionChoice(precision=p, requested=req_p, source="fixed", hardware=hw, engine=e,
                               runner=runner_for(prior, e, p))
    key = f"infer:{prior_key(prior)}:{shape[0]}x{shape[1]}|{req_p}|{req_e}|{','.join(f'{e}/{p}' for e, p in cands)}"
    ckey = f"{hw}|torch {torch.__version__}|{key}"
    ch, runner = _lookup(ckey, req_p, hw), None
    if ch is not None:
        try:       # the cache is per architecture: this prior's weights (a LoRA adapter, say) may not export
            runner = runner_for(prior, ch.engine, ch.precision)
        except Exception:
            ch = None
    if ch is None:
        ch = _measure_runtimes(prior, cands, shape, dev, reps, min_speedup, max_rel_diff, req_p, hw)
        _remember(ckey, ch)
        runner = runner_for(prior, ch.engine, ch.precision)
    if log:
        log(ch.describe())
    return replace(ch, runner=runner)


def _measure_runtimes(prior, cands, shape, dev, reps, min_speedup, max_rel_diff, req_p, hw) -> PrecisionChoice:
    """Time every candidate on the same input; see `choose_runtime` for the rule."""
    g = torch.Generator().manual_seed(1234)
    x = torch.randn((TRIAL_BATCH, int(getattr(prior, "channels", 2)), *shape), generator=g).to(dev)
    t = torch.full((TRIAL_BATCH,), 500, dtype=torch.long, device=dev)
    tok = prior.uncondition(TRIAL_BATCH).to(dev)
    with torch.no_grad():
        ref = prior.predict_eps(x, t, tok).float()
    seconds, diffs, failed = {}, {}, {}
    for e, p in cands:
        try:
            run = runner_for(prior, e, p)
            with torch.no_grad():
                seconds[(e, p)], out = _time(lambda: run.predict_eps(x, t, tok), reps)
        except Exception as exc:   # an engine that cannot export/compile this model is skipped, not fatal
            if (e, p) == cands[0]:
                raise
            failed[f"{e}/{p}"] = f"{type(exc).__name__}: {exc}"[:200]
            continue
        diffs[(e, p)] = _rel_diff(ref, out)
    # the reference is the first candidate: eager torch, fp32 whenever the request allows it
    best = _pick([c for c in cands if c in seconds], seconds, diffs, min_speedup, max_rel_diff)
    seconds = {f"{e}/{p}": v for (e, p), v in seconds.items()}
    return PrecisionChoice(precision=best[1], requested=req_p, seconds=seconds, rel_diff=diffs[best],
                           source="measured", hardware=hw, engine=best[0], failed=failed)
