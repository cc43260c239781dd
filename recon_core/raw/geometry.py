"""Encoding geometry of a Cartesian 2-D ISMRMRD header (`header.encoding[0]`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


@dataclass
class EncodingGeometry:
    """Matrix sizes and limits read from `header.encoding[0]`.

    enc_nx/enc_ny: encodedSpace matrix (readout incl. oversampling, phase); rec_nx/rec_ny: reconSpace
    matrix; fov_mm: reconSpace field of view (x, y, z) in mm; center_line: k-space centre line index.
    The image of the encoded grid is mapped to reconSpace as a scanner does: rows outside the reconSpace
    phase FOV cropped (`keep_rows`, phase oversampling), then Fourier-interpolated to `rec_shape` (e.g. a
    75 % phase resolution: 192 encoded lines → 256 rows, square pixels).
    """

    enc_nx: int
    enc_ny: int
    rec_nx: int
    rec_ny: int
    fov_mm: tuple
    center_line: int
    n_slices: int
    acc_factor: tuple = (1, 1)
    limits: dict = None            # {"slice", "contrast", "phase", "repetition", "set"} → count (max + 1), or None
    max_channels: int = 256
    enc_fov_mm: tuple | None = None  # encodedSpace field of view (x, y, z) in mm (None: as reconSpace)

    @property
    def keep_rows(self) -> int:
        """Image rows (of enc_ny) inside the reconSpace FOV: fewer when the phase FOV is oversampled."""
        if self.enc_fov_mm is None or self.enc_fov_mm[1] <= self.fov_mm[1] + 1e-6:
            return min(self.enc_ny, self.rec_ny) if self.enc_fov_mm is None else self.enc_ny
        return max(1, int(round(self.enc_ny * self.fov_mm[1] / self.enc_fov_mm[1])))

    @property
    def rec_shape(self) -> tuple:
        """(rec_ny, rec_nx): the image matrix the header asks for (reconSpace)."""
        return self.rec_ny, self.rec_nx

    def buffer_bytes(self, n_coils: int) -> int:
        """Bytes of one slice buffer (imaging + calibration sums, complex64) at the encoded size."""
        return 2 * int(n_coils) * self.enc_ny * self.enc_nx * 8

    @classmethod
    def from_header(cls, header, max_matrix: int = 512, max_channels: int = 256) -> "EncodingGeometry":
        """max_matrix caps the reconstructed matrix and the encoded phase-encode size, and the encoded
        readout at 2 × max_matrix (2× readout oversampling is standard); max_channels caps the coils."""
        try:
            enc = header.encoding[0]
            es, rs = enc.encodedSpace, enc.reconSpace
            enc_nx, enc_ny, enc_nz = int(es.matrixSize.x), int(es.matrixSize.y), int(es.matrixSize.z or 1)
            rec_nx, rec_ny = int(rs.matrixSize.x), int(rs.matrixSize.y)
            fov = (float(rs.fieldOfView_mm.x), float(rs.fieldOfView_mm.y), float(rs.fieldOfView_mm.z))
            efov = (float(es.fieldOfView_mm.x), float(es.fieldOfView_mm.y), float(es.fieldOfView_mm.z))
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise InputError(f"ISMRMRD header lacks encoding[0] encodedSpace/reconSpace matrix and FOV ({exc})") from None
        if min(enc_nx, enc_ny, rec_nx, rec_ny) < 1:
            raise InputError(f"ISMRMRD header has an empty matrix: encoded {enc_nx}x{enc_ny}, recon {rec_nx}x{rec_ny}")
        if enc_nz > 1:
            raise InputError(f"3-D encoding (encodedSpace z = {enc_nz}) is not supported; expected 2-D multi-slice")
        biggest = max(rec_nx, rec_ny, enc_ny)
        if biggest > max_matrix:
            raise InputError(f"matrix {rec_nx}x{max(rec_ny, enc_ny)} exceeds the cap max_matrix={max_matrix}")
        if enc_nx > 2 * max_matrix:
            raise InputError(f"encoded readout {enc_nx} exceeds the cap 2 × max_matrix = {2 * max_matrix} "
                             f"(max_matrix={max_matrix})")
        try:
            ch = header.acquisitionSystemInformation.receiverChannels
        except AttributeError:
            ch = None
        if ch is not None and int(ch) > max_channels:
            raise InputError(f"header declares {int(ch)} receiver channels, more than the cap max_channels={max_channels}")
        if enc_nx < rec_nx:
            raise InputError(f"encodedSpace readout {enc_nx} is smaller than reconSpace readout {rec_nx}")
        lim = enc.encodingLimits
        center = None
        n_slices = 1
        if lim is not None:
            if lim.kspace_encoding_step_1 is not None and lim.kspace_encoding_step_1.center is not None:
                center = int(lim.kspace_encoding_step_1.center)
            if lim.slice is not None and lim.slice.maximum is not None:
                n_slices = int(lim.slice.maximum) + 1
        if center is None or not (0 <= center < enc_ny):
            center = enc_ny // 2
        acc = (1, 1)
        pi = enc.parallelImaging
        if pi is not None and pi.accelerationFactor is not None:
            af = pi.accelerationFactor
            acc = (int(af.kspace_encoding_step_1 or 1), int(af.kspace_encoding_step_2 or 1))
        limits = None
        if lim is not None:
            limits = {}
            for name in ("slice", "contrast", "phase", "repetition", "set", "average"):
                lt = getattr(lim, name, None)
                if lt is not None and lt.maximum is not None:
                    limits[name] = int(lt.maximum) + 1
        return cls(enc_nx, enc_ny, rec_nx, rec_ny, fov, center, n_slices, acc, limits, int(max_channels), efov)

    @property
    def line_offset(self) -> int:
        """Row in the (enc_ny) matrix of kspace_encode_step_1 == 0 (partial Fourier shifts it)."""
        return self.enc_ny // 2 - self.center_line
