"""DDP: 2 CPU processes (gloo) under torchrun for a few steps → identical parameters on both ranks,
and each rank saw different samples."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import yaml

SCRIPT = textwrap.dedent("""
    import json, os, sys, torch
    torch.set_num_threads(1)
    from training.loop import train
    res = train(sys.argv[1], out=sys.argv[2], progress=False)
    rank = res.rank
    torch.save({k: v.detach().clone() for k, v in res.prior.state_dict().items()},
               os.path.join(sys.argv[2], f"params_rank{rank}.pt"))
    with open(os.path.join(sys.argv[2], f"seen_rank{rank}.json"), "w") as fh:
        json.dump({"seen": res.seen, "world": res.world_size, "step": res.step}, fh)
""")


def test_torchrun_two_cpu_processes(tmp_path):
    import torch

    from recon_core.metadata import MetadataRecord

    n, res = 16, 32
    d = tmp_path / "export" / "train"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(d / "mvue.npy", (0.5 * rng.standard_normal((n, 2, res, res))).astype(np.float32))
    np.save(d / "scale.npy", np.ones(n, np.float32))
    (d / "info.json").write_text(json.dumps({"count": n}))
    (d / "index.jsonl").write_text("".join(json.dumps({"subject_seed": i, "slice_index": 0}) + "\n" for i in range(n)))
    (d / "metadata.jsonl").write_text("".join(
        json.dumps(MetadataRecord(contrast=["T1", "T2"][i % 2], slice=i).to_dict()) + "\n" for i in range(n)))
    cfg = {"name": "ddp", "prior": "tiny", "seed": 1,
           "data": {"kind": "export", "path": str(tmp_path / "export")},
           "train": {"batch_size": 2, "max_steps": 3, "precision": "fp32", "device": "cpu", "threads": 1,
                     "log_every": 1},
           "conditioning": {"mode": "contextmri"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "run.py").write_text(SCRIPT)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(tmp_path / "run.py"), str(tmp_path / "c.yaml"), str(out)],
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    p0 = torch.load(out / "params_rank0.pt", weights_only=True)
    p1 = torch.load(out / "params_rank1.pt", weights_only=True)
    assert p0.keys() == p1.keys()
    assert all(torch.equal(p0[k], p1[k]) for k in p0)
    s0 = json.loads((out / "seen_rank0.json").read_text())
    s1 = json.loads((out / "seen_rank1.json").read_text())
    assert s0["world"] == s1["world"] == 2 and s0["step"] == s1["step"] == 3
    assert len(s0["seen"]) == len(s1["seen"]) == 6
    assert not set(s0["seen"][:8]) & set(s1["seen"][:8])  # one epoch = 8 per rank: disjoint shards
    # weights moved from the (identical) initialisation, and rank 0 exported the model
    from recon_core.prior import build_prior, load_prior

    init = build_prior("tiny", seed=1).state_dict()
    assert any(not torch.equal(init[k], p0[k]) for k in p0)
    assert load_prior(out / "model").manifest["training"]["steps"] == 3
