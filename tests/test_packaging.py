"""pyproject.toml is the single source of the dependencies; environment.yml follows it."""

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def requirement(spec: str) -> tuple[str, str]:
    """'torch>=2.3' -> ('torch', '>=2.3')."""
    name, constraint = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", spec).groups()
    return name.lower().replace("_", "-"), constraint.replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    specs = project["project"]["dependencies"] + project["dependency-groups"]["dev"]
    return dict(requirement(s) for s in specs)


def conda_requirements() -> tuple[dict[str, str], list[str]]:
    """(conda packages with constraints, pip lines) read from environment.yml."""
    conda, pip, section = {}, [], None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        line = line.split("#")[0].rstrip()
        if re.match(r"[a-z]+:", line):  # top-level key: name, channels, dependencies
            section = line.split(":")[0]
        elif section != "dependencies" or not line:
            continue
        elif line.strip() == "- pip:":
            section = "pip"
        elif re.match(r"\s{2}- ", line):
            name, constraint = requirement(line.strip()[2:])
            conda[CONDA_NAMES.get(name, name)] = constraint
    for line in (ROOT / "environment.yml").read_text().split("- pip:", 1)[1].splitlines():
        if line.strip().startswith("- "):
            pip.append(line.strip()[2:])
    return conda, pip


def test_environment_yml_matches_pyproject():
    conda, pip = conda_requirements()
    conda.pop("python")
    conda.pop("pip")
    assert conda == pyproject_requirements()
    assert pip == ["-e ."]


def test_python_floor_matches():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda, _ = conda_requirements()
    assert project["requires-python"] == conda["python"] == ">=3.10"


def test_lock_pins_every_dependency():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"] for p in lock["package"]}
    assert set(pyproject_requirements()) <= locked
