#!/usr/bin/env bash
# The one call on a lent GPU (H200, 16 cores; 15 minutes of device time in all, one command < 10 min), run by the
# `device` tool from the repository root with `.gpusite` carried (the packages its image lacks: diffusers, sigpy,
# pywavelets, ismrmrd, xsdata, nibabel, pygrappa as wheels; nilearn unpacked without its surface meshes). Results
# come back under $OUT (written as they are made: a run cut short still returns what it finished). Steps:
#   1. install (no network there): carried wheels + this project (editable, no deps);
#   2. on the CPUs: scanner-variety + classic training slices (simulate-dataset), while the GPU path numbers are
#      taken at the same time (issue 25 item 4): `contextmri bench --device cuda`, `bench --series 20 --device cuda`;
#   3. three trainings side by side on the one GPU until TRAIN_END s after the start
#      (training/configs/gpu_{finetune,scratch,twin}.yaml, lr_horizon minutes: each cosine spans the minutes left):
#      the shipped default continued; a conditional prior from scratch and its unconditional twin (identical recipe);
#   4. each model exported with float16 weights (export-model --half), sent back as a tarball.
# Dry run on a CPU (tiny prior, batch 8, in a copy of the repository: it writes gpu_run/ where it runs):
#   DEV=cpu NVAR=16 NCLS=16 SIMT=150 TRAIN_END=250 OUT=/tmp/out bash results/gpu/device_run.sh
set -u
DEV=${DEV:-cuda}; NVAR=${NVAR:-2000}; NCLS=${NCLS:-2400}; SIMT=${SIMT:-170}; TRAIN_END=${TRAIN_END:-470}
export PYTHONUNBUFFERED=1 CONTEXTMRI_CACHE_DIR=/tmp/cmcache CONTEXTMRI_CACHE=/tmp/cmcache
export PYTHONPATH="$PWD/.gpusite${PYTHONPATH:+:$PYTHONPATH}"
T0=$(date +%s); now() { echo $(( $(date +%s) - T0 )); }; t() { echo "== $(now) s: $*"; }
exec >> "$OUT/run.log" 2>&1     # not `> >(tee …)`: a bare `wait` then waits for tee too and never returns
t install
if [ "$DEV" = cuda ]; then
  python3 -m pip install -q --no-deps --no-index .gpusite/wheels/*.whl
  python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . || echo "editable install failed"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
python3 -c "import torch, diffusers, sigpy, ismrmrd, nilearn; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
nproc
t "data + bench"
mkdir -p gpu_run
MX=""; [ "$DEV" = cuda ] || MX="--matrix 32"        # dry run: the tiny prior's 32²
timeout $SIMT python3 -m gadget simulate-dataset --out gpu_run/var --split train --n-slices $NVAR --seed 21 --no-maps \
  --no-kspace --workers 9 --variety scanner --no-progress $MX > gpu_run/sim_var.log 2>&1 & p1=$!
timeout $SIMT python3 -m gadget simulate-dataset --out gpu_run/sim --split train --n-slices $NCLS --seed 22 --no-maps \
  --no-kspace --workers 5 --no-progress $MX > gpu_run/sim_classic.log 2>&1 & p2=$!
( timeout 90 python3 -m gadget bench --device $DEV --no-bart --repeat 3 --json "$OUT/bench_$DEV.json" --quiet | tail -14
  timeout 60 python3 -m gadget bench --series 20 --device $DEV --no-bart --json "$OUT/series_$DEV.json" --quiet | tail -4
) > "$OUT/bench.log" 2>&1 & p3=$!
wait $p1 $p2 $p3
t "data done"
tail -c 400 gpu_run/sim_var.log; tail -c 400 gpu_run/sim_classic.log; cat "$OUT/bench.log"
ls gpu_run/var/train gpu_run/sim/train 2>&1 | head -20
[ -f gpu_run/sim/train/mvue.npy ] || echo "classic export missing: training on scanner variety only"
t train
# minutes left for the loops, less ~45 s for reading the data, the precision trial and the final checkpoint
MIN=$(python3 -c "print(max(0.5, ($TRAIN_END - $(now) - 45) / 60))"); echo "max_minutes $MIN"
pids=""
for c in gpu_finetune gpu_scratch gpu_twin; do
  cfg=gpu_run/$c.yaml; cp training/configs/$c.yaml $cfg
  [ -f gpu_run/sim/train/mvue.npy ] || sed -i '/^  also:/d' $cfg
  [ "$DEV" = cuda ] || sed -i -e 's/^prior: .*/prior: tiny/' -e '/^init:/d' -e 's/batch_size: 128/batch_size: 8/' $cfg
  python3 -m gadget train --config $cfg --out gpu_run/runs/$c --device $DEV --max-minutes $MIN --no-progress \
    > gpu_run/train_$c.log 2>&1 & pids="$pids $!"
done
wait $pids
for c in gpu_finetune gpu_scratch gpu_twin; do echo "-- $c"; tail -4 gpu_run/train_$c.log; done
t export
for c in gpu_finetune gpu_scratch gpu_twin; do
  python3 -m gadget export-model gpu_run/runs/$c/model --out gpu_run/half_$c --half && tar czf "$OUT/$c.tgz" -C gpu_run half_$c
  cp gpu_run/runs/$c/log.csv "$OUT/log_$c.csv" 2>/dev/null
done
tar czf "$OUT/train_logs.tgz" gpu_run/*.log gpu_run/runs/*/config.yaml 2>/dev/null
ls -la "$OUT"; t done
