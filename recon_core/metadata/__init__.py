"""Metadata: ISMRMRD header → `MetadataRecord` → prompt → conditioning tokens.

Light imports here (no torch): `MetadataRecord`, `record_from_header`, `record_from_fastmri_h5`,
`build_prompt`, `apply_cfg_dropout`. Encoders: `recon_core.metadata.encoders` (`build_encoder`, `load_encoder`).
"""

from recon_core.metadata.dropout import apply_cfg_dropout  # noqa: F401
from recon_core.metadata.header import record_from_fastmri_h5, record_from_header  # noqa: F401
from recon_core.metadata.prompt import build_prompt  # noqa: F401
from recon_core.metadata.record import MetadataRecord  # noqa: F401
