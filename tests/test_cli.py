import subprocess
import sys

from gadget.cli import main


def test_help_lists_doctor(capsys):
    assert main([]) == 0
    assert "doctor" in capsys.readouterr().out


def test_doctor_prints_versions(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("python", "torch", "sigpy", "ismrmrd", "gadgetron", "diffusers", "transformers", "device", "engines"):
        assert name in out
    assert "NOT IMPORTABLE" not in out


def test_bad_device_exits_2_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "gadget", "doctor", "--device", "tpu"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "tpu" in proc.stderr and "Traceback" not in proc.stderr


def test_every_subcommand_help_renders(capsys):
    """`contextmri CMD --help` for every command (argparse formats each help string: a bare % breaks it)."""
    import importlib.metadata

    import pytest

    names = sorted(e.name for e in importlib.metadata.entry_points(group="contextmri.commands"))
    assert "replay" in names and "calibrate-uncertainty" in names
    for name in names:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0, name
        assert "usage:" in capsys.readouterr().out
