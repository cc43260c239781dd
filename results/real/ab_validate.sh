#!/usr/bin/env bash
# Issue 26 data A/B: one prior on the three validation sets (simulator classic val, simulator variety val,
# the real in-vivo brains). Usage: bash results/real/ab_validate.sh MODEL OUTDIR [REAL_FILES...]
# (MODEL: a checkpoint directory or 'default'; REAL_FILES default: the committed pulseq brain and, when
# present, /work/realdata/ismrmrd/marcsous_head.h5). Writes OUTDIR/{sim_val,var_val}.json and OUTDIR/real/.
set -euo pipefail
model=$1; out=$2; shift 2
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(tests/data/real/pulseq_invivo_flash.h5)
  [ -f /work/realdata/ismrmrd/marcsous_head.h5 ] && files+=(/work/realdata/ismrmrd/marcsous_head.h5)
fi
mkdir -p "$out"
common=(--dds-slices 8 --mask uniform1d:4 --nfe 50 --cfg 2 --gamma 20 --eta 1 --threads 1)
contextmri validate-prior --model "$model" --data /work/data/sim128 "${common[@]}" --json "$out/sim_val.json"
contextmri validate-prior --model "$model" --data /work/data/var128 "${common[@]}" --json "$out/var_val.json"
contextmri evaluate-real "${files[@]}" --model "$model" --out "$out/real" --masks regular1d:2:24,uniform1d:4:0.08 \
  --methods "" --diffusion dds --threads 1 --quiet > /dev/null
python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
row = {}
for k in ("sim_val", "var_val"):
    d = json.load(open(f"{out}/{k}.json"))
    row[k] = {"eps_mse": round(d["eps_mse"]["mean"], 5), "dds_psnr": round(d["dds"]["psnr_mean"], 2),
              "dds_ssim": round(d["dds"]["ssim_mean"], 4)}
r = json.load(open(f"{out}/real/results.json"))
row["real"] = {f"{n}:{m}": [round(c["dds"]["psnr"], 2), round(c["dds"]["ssim"], 4)]
               for n, v in r["results"].items() for m, c in v["cells"].items()}
print(json.dumps(row))
json.dump(row, open(f"{out}/summary.json", "w"), indent=1)
PY
