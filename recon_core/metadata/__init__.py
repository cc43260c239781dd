"""Metadata: ISMRMRD header → `MetadataRecord` → prompt → conditioning tokens (see the submodules)."""

from recon_core.metadata.record import MetadataRecord  # noqa: F401
from recon_core.metadata.header import record_from_header, record_from_fastmri_h5  # noqa: F401
