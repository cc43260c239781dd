#!/usr/bin/env bash
# Issue 26's simulator scans outside the training setting, fully sampled, as ISMRMRD raw files for
# `contextmri evaluate-real` (retrospective undersampling, RSS reference, object region, every classical method at
# its best λ — the same scoring as the real brains):  bash results/domain/make_scans.sh OUTDIR [SEEDS]
# 256² (FOV 240), axial FOV 300 mm (128²), sagittal, coronal, axial with phase encoding R→L, and the in-domain control
# (axial 128², FOV 240, phase A→P); T1 (TSE or FLASH as the seed draws), 8 coils.
set -eu
OUT=$1; SEEDS=${2:-"11 12"}
mkdir -p "$OUT"
for s in $SEEDS; do
  c="--accel 1 --contrast T1 --coils 8 --seed $s"
  contextmri simulate --out "$OUT/m256_s$s.h5" --matrix 256 $c
  contextmri simulate --out "$OUT/fov300_s$s.h5" --fov 300 $c
  contextmri simulate --out "$OUT/sagittal_s$s.h5" --orientation sagittal $c
  contextmri simulate --out "$OUT/coronal_s$s.h5" --orientation coronal $c
  contextmri simulate --out "$OUT/rl_s$s.h5" --phase-rl $c
  contextmri simulate --out "$OUT/axial_s$s.h5" $c
done
