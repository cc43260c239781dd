#!/usr/bin/env bash
# Session 9: the one call on a lent GPU (H200, 16 cores; 15 minutes of device time in all, one command < 10 min).
# Run by the `device` tool from the repository root with `.gpusite` carried (the packages its image lacks:
# diffusers, sigpy, pywavelets, ismrmrd, xsdata, nibabel, pygrappa as wheels, nilearn unpacked without its surface
# meshes); results come back under $OUT. Steps:
#   1. install (no network there): carried wheels + this project (editable, no deps);
#   2. data on the CPU: 2000 scanner-variety + 2000 classic training slices (simulate-dataset; measured there in
#      session 9: classic 33 slices/s with 8 workers, scanner-variety 11-24 slices/s with 8 workers);
#   3. GPU path numbers (issue 25 item 4): `contextmri bench --device cuda` and `bench --series 20 --device cuda`;
#   4. three trainings side by side on the one GPU, 4 minutes each (training/configs/gpu_{finetune,scratch,twin}.yaml):
#      the shipped default continued; a conditional prior from scratch and its unconditional twin (identical recipe);
#   5. each model exported with float16 weights (export-model --half) and sent back as a tarball.
set -u
export PYTHONUNBUFFERED=1 CONTEXTMRI_CACHE_DIR=/tmp/cmcache CONTEXTMRI_CACHE=/tmp/cmcache
export PYTHONPATH="$PWD/.gpusite${PYTHONPATH:+:$PYTHONPATH}"
T0=$(date +%s); t() { echo "== $(( $(date +%s) - T0 )) s: $*"; }
cm() { python3 -m gadget "$@"; }
exec >> "$OUT/run.log" 2>&1     # not `> >(tee …)`: a bare `wait` then waits for tee too and never returns
t install
python3 -m pip install -q --no-deps --no-index .gpusite/wheels/*.whl
python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . || echo "editable install failed"
python3 -c "import torch, diffusers, sigpy, ismrmrd, nilearn; print('torch', torch.__version__, 'diffusers', diffusers.__version__, torch.cuda.get_device_name(0))"
nproc; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t data
mkdir -p gpu_run
timeout 150 python3 -m gadget simulate-dataset --out gpu_run/var --split train --n-slices 2000 --seed 21 --no-maps --workers 10 --variety scanner > gpu_run/sim_var.log 2>&1 & p1=$!
timeout 150 python3 -m gadget simulate-dataset --out gpu_run/sim --split train --n-slices 2000 --seed 22 --no-maps --workers 6 > gpu_run/sim_classic.log 2>&1 & p2=$!
wait $p1 $p2
tail -c 300 gpu_run/sim_var.log; tail -c 300 gpu_run/sim_classic.log
t bench
timeout 70 python3 -m gadget bench --device cuda --no-bart --repeat 3 --json "$OUT/bench_cuda.json" --quiet | tail -12
timeout 45 python3 -m gadget bench --series 20 --device cuda --no-bart --json "$OUT/series_cuda.json" --quiet | tail -4
t train
for c in gpu_finetune gpu_scratch gpu_twin; do
  python3 -m gadget train --config training/configs/$c.yaml --out gpu_run/runs/$c --device cuda --max-minutes 4.0 \
    --no-progress > gpu_run/train_$c.log 2>&1 & pids="${pids:-} $!"
done
wait $pids
for c in gpu_finetune gpu_scratch gpu_twin; do tail -3 gpu_run/train_$c.log; done
t export
for c in gpu_finetune gpu_scratch gpu_twin; do
  python3 -m gadget export-model gpu_run/runs/$c/model --out gpu_run/half_$c --half && tar czf "$OUT/$c.tgz" -C gpu_run half_$c
done
tar czf "$OUT/train_logs.tgz" gpu_run/*.log gpu_run/runs/*/log.csv gpu_run/runs/*/config.yaml 2>/dev/null
ls -la "$OUT"; t done
