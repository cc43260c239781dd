"""The one raw-data layer: ISMRMRD acquisitions → assembled, prewhitened, oversampling-free slices.

    geometry      EncodingGeometry (matrix, FOV, centre line, limits) from the header
    noise         NoiseAccumulator, prewhiten, unwhitened_intensity
    oversampling  remove_readout_oversampling
    acs           the one ACS rule (central_block, locate_acs, acs_mask, MIN_ACS_LINES, MIN_CALIB_LINES)
    assembly      SliceKey, SliceData, Assembler (line placement, averaging, flags)
    image         slice_maps (the coil-map recipe `recon_core.coils.coil_maps` on the ACS), slice_mvue, crop_rows
    reader        open_raw / open_dataset (the one file opener and group rule), read_slices (one Assembler)
    writer        RawFileWriter, write_raw: the one raw-file writer (simulator, twix, MRD server), atomic
    twix          Siemens twix → ISMRMRD (read_twix, convert)

Every path that reads raw data uses it: the stream processor (gadget, MRD server, replay), training's
ISMRMRD dataset, and the simulator's reader.
"""

from .acs import MIN_ACS_LINES, MIN_CALIB_LINES, acs_mask, central_block, locate_acs
from .assembly import Assembler, SliceBuffer, SliceData, SliceKey, finish_slice, slice_key
from .geometry import EncodingGeometry
from .noise import NoiseAccumulator, prewhiten, unwhitened_intensity
from .oversampling import remove_readout_oversampling

__all__ = ["MIN_ACS_LINES", "MIN_CALIB_LINES", "Assembler", "EncodingGeometry", "NoiseAccumulator", "SliceBuffer", "SliceData",
           "SliceKey", "acs_mask", "central_block", "finish_slice", "locate_acs", "prewhiten",
           "remove_readout_oversampling", "slice_key", "unwhitened_intensity"]
