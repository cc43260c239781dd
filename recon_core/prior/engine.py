"""Inference engines for the prior's UNet: the same ε̂(x_t, t, c) computed by different runtimes.

An engine has the signature of `Prior.predict_eps`: `predict_eps(x (B, 2, H, W) float, t (B,) long, tokens (B, L, D))
→ (B, 2, H, W) float32` on x's device, plus `name` and `precision`. Which one runs is chosen by measurement
(`recon_core.precision.choose_runtime`, setting `engine: auto`); any of them can be asked for by name.

- `torch`        : the diffusers UNet, eager, under autocast (fp32 | bf16 | fp16) — the reference.
- `torch-cl`     : the same in channels-last memory format (oneDNN's preferred layout on CPU); its own copy of
                   the UNet, so the prior itself is never changed.
- `onnxruntime`  : the UNet exported to ONNX (dynamic batch/height/width, opset 17) run by ONNX Runtime's CPU
                   provider (fp32 only: its CPU kernels have no bf16 path).
- `openvino`     : the same ONNX graph compiled by OpenVINO for the CPU, static shape per (B, H, W) (compiled once
                   per shape, ≈ 1 s), inference precision f32 or bf16 (bf16 only where the CPU has it).
- `openvino-streams`: the same, but a batch (DDS's CFG pair: conditional and unconditional) is split across one
                   OpenVINO stream per thread, each part on its own core and cache, run concurrently; the output is
                   bit-identical to `openvino`'s. 2 threads here: 91 vs 95–115 ms per CFG pair at 128², 386–392 vs
                   398–459 ms at 256² (and steadier). A batch of one runs as `openvino`.

The ONNX export (≈ 3 s) is cached on disk per weights hash in `$CONTEXTMRI_CACHE_DIR/onnx/` (default
`~/.cache/contextmri/onnx/`), written atomically, one graph per attention window layout (`recon_core.prior.attention`:
global up to the trained token grid, e.g. every 128² slice; 2 × 2 windows at 256²), exported when first needed.
Exported engines run on the CPU only; on CUDA the candidates are `torch` and `torch-cl`.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import tempfile
import threading
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch

from ..device import autocast
from ..errors import InputError
from ..settings import ENGINE_CHOICES, ENGINES
from .attention import set_attention_window
from .model import Prior

EXPORTED = ("onnxruntime", "openvino", "openvino-streams")
#: the precisions each engine can run on the CPU (fp16 only on CUDA, and only when asked for)
ENGINE_PRECISIONS = {"torch": ("fp32", "bf16", "fp16"), "torch-cl": ("fp32", "bf16", "fp16"),
                     "onnxruntime": ("fp32",), "openvino": ("fp32", "bf16"), "openvino-streams": ("fp32", "bf16")}
MAX_SHAPES = 8          # OpenVINO: compiled shapes kept per engine (oldest dropped first)
_EXPORT_LOCK = threading.Lock()
_MEMO: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _memo(obj) -> dict:
    """What is known about one prior or UNet object (its engines, its weights hash), dropped with the object (the
    engines hold no strong reference back to it)."""
    return _MEMO.setdefault(obj, {})


def engine_installed(name: str) -> bool:
    """Whether the runtime `name` can be imported here (torch engines always)."""
    if name in ("torch", "torch-cl"):
        return True
    mod = {"onnxruntime": "onnxruntime", "openvino": "openvino", "openvino-streams": "openvino"}[name]
    return importlib.util.find_spec(mod) is not None and importlib.util.find_spec("onnx") is not None


def engines_for(device) -> tuple:
    """The engines that can run on `device` here (installed, and CPU-only ones only on the CPU)."""
    dev = torch.device(device)
    return tuple(e for e in ENGINES if engine_installed(e) and (dev.type == "cpu" or e not in EXPORTED))


def runs_unet(prior) -> bool:
    """Whether `prior`'s ε̂ is its UNet's (a stock `Prior`): only then can another engine stand in for
    `prior.predict_eps`. Wrappers and priors that compute ε otherwise run in eager torch."""
    return isinstance(prior, Prior) and type(prior).predict_eps is Prior.predict_eps


def check_engine(name: str, device) -> str:
    """Validate an engine request (auto or a name) for `device`; an engine that cannot run here → InputError."""
    e = str(name or "").lower()
    if e not in ENGINE_CHOICES:
        raise InputError(f"unknown engine {name!r}: expected one of {', '.join(ENGINE_CHOICES)}")
    if e != "auto" and e not in engines_for(device):
        why = "runs on the CPU only" if engine_installed(e) else "is not installed (pip install onnx onnxruntime openvino)"
        raise InputError(f"engine {e} {why}; use engine auto or torch")
    return e


def weights_hash(prior) -> str:
    """sha1 (12 hex) of the UNet's parameters and buffers: the key of its exported graph (memoised per object)."""
    memo = _memo(prior.unet)
    if "weights_hash" not in memo:
        h = hashlib.sha1()
        for name, t in sorted(prior.unet.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        memo["weights_hash"] = h.hexdigest()[:12]
    return memo["weights_hash"]


def onnx_dir() -> Path:
    base = os.environ.get("CONTEXTMRI_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "contextmri")
    return Path(base) / "onnx"


class _UNetCall(torch.nn.Module):
    """(x, t, tokens) → ε: the UNet call the engines export (diffusers' keyword API as positional inputs)."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t, tokens):
        return self.unet(x, t, encoder_hidden_states=tokens, return_dict=False)[0]


def export_onnx(prior, path=None, layout=(1, 1)) -> Path:
    """The prior's UNet as ONNX (dynamic B, H, W; fp32 weights) with its attention traced for one window `layout`
    (nh, nw) (`recon_core.prior.attention`; (1, 1): global), at `path` or in the cache by weights hash and layout;
    reused when present. Written to a temporary file and renamed (atomic)."""
    nh, nw = (int(v) for v in layout)
    tag = "" if (nh, nw) == (1, 1) else f"-w{nh}x{nw}"
    path = Path(path) if path is not None else onnx_dir() / f"unet-{weights_hash(prior)}{tag}.onnx"
    with _EXPORT_LOCK:
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        unet = copy.deepcopy(prior.unet).float().cpu().eval()
        set_attention_window(unet, prior.attention_window, layout=(nh, nw))
        f = prior.unet_down
        x = torch.zeros(2, int(prior.channels), 8 * f * nh, 8 * f * nw)
        t = torch.full((2,), 500, dtype=torch.long)
        tok = prior.uncondition(2).detach().float().cpu()
        fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
        os.close(fd)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")      # diffusers' shape checks become constants: B, H, W stay dynamic
                torch.onnx.export(_UNetCall(unet), (x, t, tok), tmp, input_names=["x", "t", "tokens"],
                                  output_names=["eps"], opset_version=17, dynamo=False,
                                  dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "t": {0: "b"}, "tokens": {0: "b"},
                                                "eps": {0: "b", 2: "h", 3: "w"}})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


class TorchEngine:
    """The diffusers UNet in eager PyTorch under autocast; `channels_last`: on its own channels-last copy."""

    def __init__(self, prior, precision: str = "fp32", channels_last: bool = False):
        self._prior, self.precision = weakref.ref(prior), precision
        self.name = "torch-cl" if channels_last else "torch"
        self.unet = None
        if channels_last:
            self.unet = copy.deepcopy(prior.unet).eval().to(memory_format=torch.channels_last)

    def predict_eps(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, self.precision):
            if self.unet is None:
                return self._prior().predict_eps(x, t, tokens)
            xc = x.contiguous(memory_format=torch.channels_last)
            out = self.unet(xc, t, encoder_hidden_states=tokens.to(x.dtype), return_dict=False)[0]
        return out.float().contiguous()


def _feeds(x, t, tokens) -> dict:
    return {"x": x.detach().float().cpu().numpy(), "t": t.detach().cpu().numpy().astype(np.int64),
            "tokens": tokens.detach().float().cpu().numpy()}


class OnnxRuntimeEngine:
    """The exported UNet in ONNX Runtime (CPU provider, all graph optimisations, torch's intra-op thread count)."""

    def __init__(self, prior, precision: str = "fp32"):
        import onnxruntime as ort

        if precision != "fp32":
            raise InputError(f"engine onnxruntime runs fp32 only on the CPU, not {precision}")
        self.name, self.precision = "onnxruntime", "fp32"
        so = ort.SessionOptions()
        so.intra_op_num_threads = torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self._ort, self._prior, self._options, self.sessions = ort, weakref.ref(prior), so, {}
        self._session((1, 1))

    def _session(self, layout: tuple):
        """The ONNX Runtime session of the graph traced for attention `layout` (exported on first use)."""
        if layout not in self.sessions:
            path = str(export_onnx(self._prior(), layout=layout))
            self.sessions[layout] = self._ort.InferenceSession(path, self._options, providers=["CPUExecutionProvider"])
        return self.sessions[layout]

    def predict_eps(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        out = self._session(self._prior().attention_layout(x.shape)).run(None, _feeds(x, t, tokens))[0]
        return torch.from_numpy(out).to(x.device).float()


class OpenVINOEngine:
    """The exported UNet compiled by OpenVINO for the CPU: one compiled model per input shape (static shapes
    are faster than dynamic ones), inference precision hint f32 or bf16, torch's intra-op thread count.
    `streams`: a batch of B ≥ 2 is split into min(threads, B) parts run concurrently on as many OpenVINO streams of
    one thread each (engine `openvino-streams`); otherwise one latency-mode request uses every thread."""

    def __init__(self, prior, precision: str = "fp32", streams: bool = False):
        import openvino as ov

        if precision not in ENGINE_PRECISIONS["openvino"]:
            raise InputError(f"engine openvino runs fp32 or bf16, not {precision}")
        self.name, self.precision = ("openvino-streams" if streams else "openvino"), precision
        self.streams = bool(streams)
        self.core = ov.Core()
        self._prior = weakref.ref(prior)
        export_onnx(prior)                      # the global-attention graph now (fails early if export cannot)
        self.compiled: dict = {}
        self.lock = threading.RLock()

    def _compiled(self, shapes: dict, n_streams: int = 0):
        """(compiled model, [infer requests]) for `shapes`: latency mode (n_streams 0, one request) or n_streams
        streams of one thread (n_streams requests)."""
        key = (tuple((k, tuple(v)) for k, v in shapes.items()), n_streams)
        with self.lock:
            if key not in self.compiled:
                prior = self._prior()
                model = self.core.read_model(str(export_onnx(prior, layout=prior.attention_layout(shapes["x"]))))
                model.reshape({k: list(v) for k, v in shapes.items()})
                hint = {"fp32": "f32", "bf16": "bf16"}[self.precision]
                conf = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": max(n_streams, torch.get_num_threads())}
                conf.update({"NUM_STREAMS": n_streams} if n_streams else {"PERFORMANCE_HINT": "LATENCY"})
                cm = self.core.compile_model(model, "CPU", conf)
                if len(self.compiled) >= MAX_SHAPES:       # a long-running server: bounded memory
                    self.compiled.pop(next(iter(self.compiled)))
                self.compiled[key] = (cm, [cm.create_infer_request() for _ in range(max(1, n_streams))])
            return self.compiled[key]

    def predict_eps(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        feeds = _feeds(x, t, tokens)
        n = min(torch.get_num_threads(), x.shape[0]) if self.streams else 0
        with self.lock:         # the requests are stateful: one caller at a time
            if n < 2:
                cm, (req,) = self._compiled({k: v.shape for k, v in feeds.items()})
                out = np.array(req.infer(feeds)[cm.output(0)])
            else:
                # array_split: the larger parts first, so the parts of each size, taken largest size first, run
                # concurrently on one compiled shape and come back in the batch's order
                parts = [{k: v[idx] for k, v in feeds.items()} for idx in np.array_split(np.arange(x.shape[0]), n)]
                outs = []
                for size in sorted({len(p["x"]) for p in parts}, reverse=True):     # at most two part sizes
                    group = [p for p in parts if len(p["x"]) == size]
                    cm, reqs = self._compiled({k: v.shape for k, v in group[0].items()}, n)
                    for req, p in zip(reqs, group):
                        req.start_async(p)
                    for req in reqs[:len(group)]:
                        req.wait()
                    outs += [np.array(req.get_output_tensor(0).data) for req in reqs[:len(group)]]
                out = np.concatenate(outs)
        return torch.from_numpy(out).to(x.device).float()


def runner_for(prior, name: str, precision: str):
    """The engine object for (prior, engine, precision), built once per process and reused (a torch-cl copy, an
    ONNX Runtime session and OpenVINO's compiled shapes live as long as the prior does)."""
    runners = _memo(prior).setdefault("runners", {})
    hit = runners.get((name, precision))
    if hit is None or hit[0]() is not prior.unet:             # a swapped UNet gets new engines
        hit = runners[(name, precision)] = (weakref.ref(prior.unet), build_engine(prior, name, precision))
    return hit[1]


def build_engine(prior, name: str, precision: str):
    """An engine object (see module docstring) for `prior` running in `precision`."""
    if precision not in ENGINE_PRECISIONS.get(name, ()):
        raise InputError(f"engine {name} cannot run {precision} (it runs {', '.join(ENGINE_PRECISIONS[name])})")
    if name in ("torch", "torch-cl"):
        return TorchEngine(prior, precision, channels_last=name == "torch-cl")
    if name == "onnxruntime":
        return OnnxRuntimeEngine(prior, precision)
    if name in ("openvino", "openvino-streams"):
        return OpenVINOEngine(prior, precision, streams=name == "openvino-streams")
    raise InputError(f"unknown engine {name!r}: expected one of {', '.join(ENGINES)}")
