"""The project as a library: a wheel built from this checkout holds every shipped resource and the
console scripts (and no tests), and, installed into a bare folder, works from a directory that is not
the checkout: the taxonomy loads, the taxonomy CLI validates a shipped TSV, the demo config trains one
iteration on freshly generated demo data, and the data CLI checks that data."""

import configparser
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESOURCES = Path("unifiedseg") / "resources"
# Top-level folders of a checkout that are not sources (the venv, build outputs, generated data).
NOT_SOURCES = {".git", ".venv", "build", "dist", "data", "work_dirs", ".pytest_cache", ".hypothesis", ".whl",
               ".gl"}


def _run(cmd, *, cwd, env=None, timeout=300):
    start = time.monotonic()
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    shown = " ".join("<code>" if "\n" in str(c) else str(c) for c in cmd[1:5])
    print(f"{time.monotonic() - start:6.1f}s  {shown} ... -> exit {done.returncode}")
    return done


def _ok(done):
    assert done.returncode == 0, \
        f"exit {done.returncode}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    return done


def _copy_sources(dest: Path) -> Path:
    """The checkout without its venv and build outputs, so the build neither writes into the checkout
    (build/, *.egg-info) nor picks up stale files from an earlier build/lib."""

    def ignore(folder, names):
        skipped = {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".egg-info"))}
        if Path(folder).resolve() == REPO:
            skipped |= NOT_SOURCES & set(names)
        return skipped

    shutil.copytree(REPO, dest, symlinks=True, ignore=ignore)
    return dest


def _build_command(src: Path, wheel_dir: Path) -> list:
    """pip wheel without build isolation when this interpreter has a recent enough setuptools (no index
    needed, fast), else with isolation (pip fetches the build requirements)."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", wheel_dir]
    try:
        import setuptools

        usable = int(setuptools.__version__.split(".")[0]) >= 77  # what pyproject's build-system requires
    except Exception:  # noqa: BLE001 - not importable, or an odd version string: let pip install one
        usable = False
    return cmd + (["--no-build-isolation"] if usable else []) + [src]


def _declared_scripts() -> set[str] | None:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return None
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])


def _files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    src = _copy_sources(tmp_path / "src")
    wheel_dir, target, cwd = tmp_path / "wheels", tmp_path / "target", tmp_path / "elsewhere"
    cwd.mkdir()

    # ---- build: every shipped resource, the console scripts, no tests
    _ok(_run(_build_command(src, wheel_dir), cwd=tmp_path))
    wheels = list(wheel_dir.glob("unifiedseg-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        entry_points = configparser.ConfigParser()
        entry_points.read_string(whl.read(f"{dist_info}/entry_points.txt").decode())
    shipped = {(RESOURCES / f).as_posix() for f in _files_under(src / RESOURCES)}
    assert shipped, "no resources in the checkout?"
    assert not shipped - names, f"resources missing from the wheel: {sorted(shipped - names)[:20]}"
    assert not {n for n in names if n.startswith(("tests/", "tools/", "benchmarks/"))}
    assert all(n.startswith(("unifiedseg/", dist_info + "/")) for n in names), sorted(names)[:20]
    scripts = dict(entry_points["console_scripts"])
    assert scripts and all(v.startswith("unifiedseg.cli.") for v in scripts.values()), scripts
    declared = _declared_scripts()
    if declared is not None:
        assert set(scripts) == declared

    # ---- install into a bare folder, then use it only through PYTHONPATH from another directory
    _ok(_run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", target, wheels[0]],
             cwd=tmp_path))
    installed = _files_under(target)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("UNIFIEDSEG_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONPATH=str(target), UNIFIEDSEG_CACHE_DIR=str(tmp_path / "cache"), PYTHONDONTWRITEBYTECODE="1")

    # (a) the package and its resources come from the install
    snippet = (
        "import importlib, sys\n"
        "from pathlib import Path\n"
        "import unifiedseg, unifiedseg.paths\n"
        "target = Path(sys.argv[1]).resolve()\n"
        "assert Path(unifiedseg.__file__).resolve().is_relative_to(target), unifiedseg.__file__\n"
        "assert unifiedseg.paths.taxonomy_dir().resolve().is_relative_to(target)\n"
        "from unifiedseg.taxonomy import TaxonomyConverter\n"
        "assert TaxonomyConverter.from_tsv('mseg').num_classes == 194\n"
        "for spec in sys.argv[2:]:\n"
        "    module, func = spec.split(':')\n"
        "    assert callable(getattr(importlib.import_module(module), func)), spec\n"
        "print('ok')\n"
    )
    done = _ok(_run([sys.executable, "-c", snippet, target, *scripts.values()], cwd=cwd, env=env))
    assert done.stdout.strip().endswith("ok")

    # (b) the taxonomy CLI validates the shipped MSeg TSV (warnings allowed, no errors)
    done = _ok(_run([sys.executable, "-m", "unifiedseg.cli.taxonomy", "validate", "mseg"], cwd=cwd, env=env))
    assert done.stdout.strip(), \
        f"printed nothing (no `if __name__ == '__main__'` in the module?); stderr: {done.stderr[-2000:]}"
    summary = done.stdout.strip().splitlines()[-1]
    assert Path(summary.split(": ")[0]) == (target / RESOURCES / "taxonomy" / "mseg.tsv").resolve(), summary
    assert ": 0 error(s)," in summary, summary

    # (c) one iteration of the demo training, the config found among the shipped ones, demo data generated
    #     into ./data/demo
    work_dir = cwd / "work_dirs" / "demo"
    done = _ok(_run([sys.executable, "-m", "unifiedseg.cli.train", "--config", "config/train/demo/unified.yaml",
                     "train.max_iters=1", "data.num_workers=0", f"work_dir={work_dir}", "data.batch_size=2",
                     "data.val.max_images=2", "data.val.interval=0", "train.checkpoint_interval=0",
                     "train.log_interval=1", "schedule.warmup_iters=1"], cwd=cwd, env=env))
    assert (cwd / "data" / "demo" / "demo-city").is_dir()
    assert (work_dir / "checkpoints" / "final.pth").is_file()
    metrics = json.loads((work_dir / "final_metrics.json").read_text())
    assert metrics["iteration"] == 1 and set(metrics["datasets"]) == {"demo-city", "demo-ade"}, metrics.keys()

    # (d) the data CLI checks the generated data against the registry shipped in the wheel
    done = _ok(_run([sys.executable, "-m", "unifiedseg.cli.data", "status", "--root", cwd / "data" / "demo",
                     "--datasets", "demo-city", "--no-progress", "--json"], cwd=cwd, env=env))
    rows = json.loads(done.stdout)["splits"]
    assert {r["split"] for r in rows} >= {"train", "val"}, rows
    assert all(r["state"] == "ok" for r in rows if r["required"]), rows
    assert all(str(target.resolve()) in r["list_origin"] for r in rows), [r["list_origin"] for r in rows]

    # nothing wrote into the installed package (generated files go to the working directory or the cache)
    assert _files_under(target) == installed
