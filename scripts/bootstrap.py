"""Create the project's virtual environment and keep it in step with the requirements files.

Standard library only: this runs under whatever Python 3.11+ started ``scripts/run`` or
``scripts/test``, before any dependency is installed. The venv lives in ``VENV_DIR`` (default
``.venv``); a stamp file records the hashes of the requirement files and ``pyproject.toml`` it
was installed from, so later runs skip pip entirely until one of them changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIN_PYTHON = (3, 11)
STAMP_NAME = ".ace-install.json"


def venv_dir() -> Path:
    """Where the virtual environment lives (env VENV_DIR, default ``.venv`` in the project)."""
    return Path(os.environ.get("VENV_DIR") or ROOT / ".venv").resolve()


def venv_python() -> Path:
    """The venv's interpreter."""
    return venv_dir() / "bin" / "python"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wanted(requirements: str) -> dict[str, str]:
    """Hashes of the files an install from ``requirements`` depends on."""
    names = ["requirements.txt", "pyproject.toml"]
    if requirements != "requirements.txt":
        names.append(requirements)
    return {name: _digest(ROOT / name) for name in names}


def check_python() -> None:
    """Refuse to run on a Python older than the project supports, saying which one to use."""
    if sys.version_info < MIN_PYTHON:
        want = ".".join(map(str, MIN_PYTHON))
        sys.exit(
            f"Python {want}+ is needed, this is {sys.version.split()[0]} ({sys.executable}). "
            f"Run the command with python{want} instead of python3."
        )


def ensure_venv(requirements: str = "requirements.txt") -> Path:
    """Create the venv if needed and install ``requirements`` plus the project (editable).

    The project is installed editable so its stevedore entry points (channels, policies,
    resolvers) are registered while the code stays in this folder. Returns the venv's python.
    """
    check_python()
    venv, python = venv_dir(), venv_python()
    if not python.exists():
        print(f"==> Creating a virtual environment in {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)

    stamp = venv / STAMP_NAME
    try:
        installed = json.loads(stamp.read_text())
    except (OSError, ValueError):
        installed = {}
    wanted = _wanted(requirements)
    if all(installed.get(name) == digest for name, digest in wanted.items()):
        return python

    print(f"==> Installing {requirements} and the project into {venv}", flush=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "-r", str(ROOT / requirements)], check=True, cwd=ROOT)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True, cwd=ROOT)
    stamp.write_text(json.dumps({**installed, **wanted}, indent=2, sort_keys=True))
    return python


def running_in_venv() -> bool:
    """Whether this process already runs on the venv's interpreter."""
    return Path(sys.prefix).resolve() == venv_dir()


def reexec_in_venv(python: Path, script: Path) -> None:
    """Replace this process with ``script`` run by the venv's python, keeping the arguments."""
    if not running_in_venv():
        os.execv(str(python), [str(python), str(script), *sys.argv[1:]])
