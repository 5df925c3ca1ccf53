"""The installed wheel carries the presets, and they load from there, not from the source checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from conftest import REPO


def test_presets_load_from_an_installed_wheel(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            str(REPO), "-w", str(wheels)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next(wheels.glob("grpo_tui-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.name for p in (REPO / "presets").glob("*.toml"))
    assert sorted(n.split("/")[-1] for n in names if n.startswith("grpo_tui/presets/") and n.endswith(".toml")) == shipped
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)  # a wheel is a zip laid out as site-packages
    code = ("import grpo_tui.engine.config as c, sys; assert c.__file__.startswith(sys.argv[1]), c.__file__; "
            "print(len(c.list_presets())); c.load_config('cpu-demo'); c.load_config('tiny')")
    env = dict(os.environ, PYTHONPATH=str(target))
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == len(shipped)


def _built_wheel(tmp_path) -> zipfile.ZipFile:
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            str(REPO), "-w", str(wheels)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    return zipfile.ZipFile(next(wheels.glob("grpo_tui-*.whl")))


def test_the_wheel_adds_one_top_level_import_name(tmp_path):
    wheel = _built_wheel(tmp_path)
    top_level = next(n for n in wheel.namelist() if n.endswith(".dist-info/top_level.txt"))
    assert wheel.read(top_level).decode().split() == ["grpo_tui"]
    assert {n.split("/")[0] for n in wheel.namelist() if not n.split("/")[0].endswith(".dist-info")} == {"grpo_tui"}


def test_every_source_package_is_listed_for_the_wheel():
    import tomllib
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {"grpo_tui." + ".".join(d.relative_to(REPO).parts)
               for top in ("engine", "presets", "rundir", "tui") for d in [REPO / top, *(REPO / top).rglob("*")]
               if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))}
    assert listed == on_disk
