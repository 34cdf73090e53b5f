#!/bin/sh
# The reference for bench/run_benchmark.py: edx-ace 1.15.0 from PyPI in its own virtual
# environment (bench/.venv-ref, git-ignored), with the same Django as the project.
set -eu
cd "$(dirname "$0")"
python3 -m venv .venv-ref
.venv-ref/bin/pip install --quiet "edx-ace==1.15.0" "Django==5.2.19"
.venv-ref/bin/python -c "import django, edx_ace; print('edx-ace', edx_ace.__version__, 'Django', django.get_version())"
