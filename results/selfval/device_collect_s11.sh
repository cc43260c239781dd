#!/usr/bin/env bash
# Second call of session 11 (the first one's sample collection failed on a script bug): collect_samples.py K 8 on
# the real brains and the simulator test split (every Table-1 cell), scored with the K 2/4/8 factors the first call
# fitted (.gpusite/calib_manifest.json); packed into $OUT/s11b.tgz.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/.gpusite${PYTHONPATH:+:$PYTHONPATH}"
W=/tmp/w2; rm -rf $W; mkdir -p $W/cal
python3 -m pip install -q --no-deps --no-index .gpusite/wheels/*.whl
python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . > /dev/null || echo "editable install failed"
export CONTEXTMRI_CAL_DIR=$W/cal CONTEXTMRI_REAL_DIR=.gpusite/realdata
timeout 90 python3 results/calibration/collect_samples.py real 4 8 cuda > $W/collect_real.log 2>&1 &
timeout 150 python3 results/calibration/collect_samples.py test 8 8 cuda uniform1d,poisson2d > $W/collect_test.log 2>&1
wait
for w in real test; do
  python3 results/calibration/score_samples.py .gpusite/calib_manifest.json $W/score_$w.json $W/cal/$w.npz > $W/score_$w.log 2>&1
  cat $W/score_$w.log
done
tar czf "$OUT/s11b.tgz" -C $W --exclude=test.npz . && ls -la "$OUT"
