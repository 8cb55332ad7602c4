"""benchmarks/gpu.py (the one-command GPU check of issue 12) runs end to end at tiny sizes on the CPU."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu.py"


def test_gpu_script_runs_at_tiny_sizes(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [r["mode"] for r in result["train"]] == ["fp32", "bf16 + channels_last"]
    assert all(r["crops_per_s"] > 0 and r["batch"] == 4 for r in result["train"])
    assert result["loader"]["crops_per_s_by_workers"]["1"] > 0 and result["loader"]["needed_for_fastest_step"] >= 1
    assert [v["precision"] for v in result["validation"]] == ["fp32", "bf16"]
    assert result["validation"][0]["prediction_shape"] == [1, 96, 160]
    assert result["inference"]["fps"] > 0
    assert "crops/s" in done.stdout and "fps" in done.stdout
