#!/usr/bin/env bash
# Session 11's one call on a lent GPU (H200, 16 cores), run by the `device` tool from the repository root with
# `.gpusite` carried (wheels as in results/gpu/device_run.sh, plus .gpusite/realdata/{pulseq_invivo_flash,
# marcsous_head}.h5: the real brains, the second one not committable). Evaluations that take CPU-hours here:
#   A. results/selfval/probe.py in 4 processes: the self-validation ingredients (3 hold-out folds × SENSE,
#      L1-wavelet, DDS γ 10/20/40/noise weight, K 2) and every candidate's PSNR with all lines, on the two real
#      brains × 4 masks and 8 simulator validation slices × 3 masks (issue 26 item 2b, issue 27 item 3);
#   B. `contextmri calibrate-uncertainty --samples 2,4,8` on a copy of the shipped prior (K 8 factors), then
#      collect_samples.py (K 8) on the simulator test split (every Table-1 cell) and on the real brains, scored by
#      score_samples.py with those factors (issue 27 item 1: K = 2, 4, 8).
# Results are made in /tmp/w and packed into $OUT/s11.tgz at the end (the device returns at most 8 files); every
# step has its own time limit so the packing happens. Dry run on a CPU: DEV=cpu SIMS=1 FOLDS=1 OUT=/tmp/o bash THIS
set -u
DEV=${DEV:-cuda}; SIMS=${SIMS:-8}; FOLDS=${FOLDS:-3}; NCAL=${NCAL:-8}; PT=${PT:-380}; CT=${CT:-150}
export PYTHONUNBUFFERED=1 CONTEXTMRI_CACHE_DIR=/tmp/cmcache CONTEXTMRI_CACHE=/tmp/cmcache
export PYTHONPATH="$PWD/.gpusite${PYTHONPATH:+:$PYTHONPATH}"
T0=$(date +%s); now() { echo $(( $(date +%s) - T0 )); }; t() { echo "== $(now) s: $*"; }
exec >> "$OUT/run.log" 2>&1
W=/tmp/w; rm -rf $W; mkdir -p $W
t install
if [ "$DEV" = cuda ]; then
  python3 -m pip install -q --no-deps --no-index .gpusite/wheels/*.whl
  python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . || echo "editable install failed"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
fi
RD=.gpusite/realdata
t "A probe + B calibration"
pids=""
for i in 0 1 2 3; do
  timeout $PT python3 results/selfval/probe.py "$W/probe_$i.jsonl" --device $DEV --part $i/4 --threads 3 \
    --sim-slices $SIMS --folds $FOLDS --real $RD/pulseq_invivo_flash.h5 $RD/marcsous_head.h5 > "$W/probe_$i.log" 2>&1 &
  pids="$pids $!"
done
(
  rm -rf /tmp/calmodel && cp -r recon_core/models/default /tmp/calmodel
  timeout $CT python3 -m gadget calibrate-uncertainty --model /tmp/calmodel --slices $NCAL --samples 2,4,8 --device $DEV \
    --threads 2 > "$W/calib.log" 2>&1
  cp /tmp/calmodel/contextmri.json "$W/calib_manifest.json"
  t "calibration fitted"
  export CONTEXTMRI_CAL_DIR=$W/cal CONTEXTMRI_REAL_DIR=$RD; mkdir -p $W/cal
  timeout 60 python3 results/calibration/collect_samples.py real 2 8 $DEV > "$W/collect_real.log" 2>&1
  python3 results/calibration/score_samples.py "$W/calib_manifest.json" "$W/score_real.json" $W/cal/real.npz \
    > "$W/score_real.log" 2>&1
  t "real scored"
  [ "$DEV" = cuda ] || sed -i 's/^    sim("test", 8, KINDS)/    sim("test", 1, KINDS)/' results/calibration/collect_samples.py
  timeout $CT python3 results/calibration/collect_samples.py test 2 8 $DEV uniform1d,poisson2d > "$W/collect_test.log" 2>&1
  python3 results/calibration/score_samples.py "$W/calib_manifest.json" "$W/score_test.json" $W/cal/test.npz \
    > "$W/score_test.log" 2>&1
  t "test scored"
) > "$W/calib_chain.log" 2>&1 &
pids="$pids $!"
wait $pids
t done
tail -n 3 $W/probe_*.log; cat $W/calib_chain.log $W/score_real.log; tail -20 $W/score_test.log
tar czf "$OUT/s11.tgz" -C $W --exclude=test.npz . && ls -la "$OUT"
