#!/usr/bin/env bash
# Session 11, third call: the product's self-validation (results/real/selfval_check.py, default candidates and
# two folds) on the real brains × 4 masks and 8 simulator validation slices × 3 masks, 4 processes on the GPU;
# packed into $OUT/s11c.tgz. Dry run on a CPU: DEV=cpu SIMS=0 OUT=/tmp/o bash THIS
set -u
DEV=${DEV:-cuda}; SIMS=${SIMS:-8}; PT=${PT:-330}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/.gpusite${PYTHONPATH:+:$PYTHONPATH}"
W=/tmp/w3; rm -rf $W; mkdir -p $W
if [ "$DEV" = cuda ]; then
  python3 -m pip install -q --no-deps --no-index .gpusite/wheels/*.whl
  python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . > /dev/null || echo "editable install failed"
fi
RD=.gpusite/realdata
pids=""
for i in 0 1 2 3; do
  timeout $PT python3 results/real/selfval_check.py default $W/check_$i.json --device $DEV --part $i/4 --threads 3 \
    --sim-slices $SIMS --real $RD/pulseq_invivo_flash.h5 $RD/marcsous_head.h5 > $W/check_$i.log 2>&1 &
  pids="$pids $!"
done
wait $pids
tail -n 2 $W/check_*.log
tar czf "$OUT/s11c.tgz" -C $W . && ls -la "$OUT"
