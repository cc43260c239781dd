"""What an MRD client may change (issue 14): the operator's settings are ceilings, not suggestions.

A client's TEXT/CONFIG_TEXT parameters are applied over the operator's (`serve --set`) only where the
policy allows:
- keys outside `allowed` (model, device, precision, max_matrix, scale, clip_x0, … by default) are
  refused, with one message naming the key — except `model`, which a client may set to one of the
  operator's `models` (`serve --allow-model NAME`, repeatable);
- `method` must be among `methods`;
- cost parameters (nfe, samples, cg_iters, final_cg_iters) may not exceed the operator's value when the
  operator set one, else the policy's ceiling (`max_nfe`, `max_samples`, …);
- max_matrix may only be lowered.
Unknown keys pass through to `ReconParams.extra` (logged and ignored), as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recon_core import samplers
from recon_core.errors import InputError

from .params import ReconParams, all_methods

#: the front door's own client-settable parameters; the samplers' come from their declarations (field
#: metadata `client`/`ceiling`, collected by `recon_core.samplers.client_settings`)
FRONT_DOOR_CLIENT_PARAMS = frozenset({
    "method", "anatomy", "contrast", "pathology", "send_magnitude", "send_phase", "send_std", "send_zerofilled",
    "max_matrix", "model", "image_format", "bits_stored"})
CLIENT_PARAMS = FRONT_DOOR_CLIENT_PARAMS | frozenset(samplers.client_settings())
COST_CEILINGS = {k: v for k, v in samplers.client_settings().items() if v is not None}


def _norm(key) -> str:
    return str(key).strip().replace("-", "_").lower()


@dataclass(frozen=True)
class ClientPolicy:
    allowed: frozenset = CLIENT_PARAMS
    methods: tuple = field(default_factory=all_methods)
    ceilings: dict = field(default_factory=lambda: dict(COST_CEILINGS))
    models: tuple = ()

    def merge(self, operator: dict, client: dict) -> dict:
        """The session's parameter mapping: operator values, overridden by the client where allowed.
        Raises InputError naming the first parameter the client may not set (or not to that value)."""
        known = set(ReconParams.field_names())
        op = {_norm(k): v for k, v in (operator or {}).items()}
        base = ReconParams.from_mapping(op)
        out = dict(op)
        for raw_key, value in (client or {}).items():
            key = _norm(raw_key)
            if key not in known:
                out[raw_key] = value          # unknown: ReconParams.extra (logged, ignored)
                continue
            if key not in self.allowed:
                raise InputError(f"parameter {key} is set by the server operator; clients may set "
                                 f"{', '.join(sorted(self.allowed - {'model'}))}")
            parsed = ReconParams.from_mapping({key: value})          # type/range check, one line
            v = getattr(parsed, key)
            if key == "model" and str(v) != base.model and str(v) not in self.models:
                raise InputError(f"model {v!r} is not offered by this server (operator-allowed models: "
                                 f"{', '.join((base.model,) + tuple(self.models))})")
            if key == "method" and v not in self.methods:
                raise InputError(f"method {v!r} is not offered by this server (allowed: {', '.join(self.methods)})")
            if key in self.ceilings:
                cap = int(getattr(base, key)) if key in op else int(self.ceilings[key])
                if int(v) > cap:
                    raise InputError(f"parameter {key}={v} exceeds the server's ceiling {cap}")
            if key == "max_matrix" and int(v) > base.max_matrix:
                raise InputError(f"parameter max_matrix={v} exceeds the server's max_matrix {base.max_matrix}")
            out[key] = value
        return out
