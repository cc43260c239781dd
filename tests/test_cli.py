import subprocess
import sys

from gadget.cli import main


def test_help_lists_doctor(capsys):
    assert main([]) == 0
    assert "doctor" in capsys.readouterr().out


def test_doctor_prints_versions(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("python", "torch", "sigpy", "ismrmrd", "gadgetron", "diffusers", "transformers", "device"):
        assert name in out
    assert "NOT IMPORTABLE" not in out


def test_bad_device_exits_2_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "gadget", "doctor", "--device", "tpu"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "tpu" in proc.stderr and "Traceback" not in proc.stderr
