#!/usr/bin/env bash
# Installs everything Ensemble needs on Debian + Python 3.11: system packages, then a virtualenv.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(fluidsynth fluid-soundfont-gm chromium ffmpeg)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
stamp="$VENV/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi
# The project itself, editable: `python bench/x.py`, notebooks and the `ensemble` command import it
# from anywhere, and edits take effect without reinstalling.
py="$PWD/$VENV/bin/python"
(cd / && "$py" -c "import ensemble") >/dev/null 2>&1 \
  || "$py" -m pip install -q --no-deps --no-build-isolation -e .
echo "setup: ready ($("$VENV/bin/python" --version), torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'))"
