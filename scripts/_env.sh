# Shared by scripts/serve and scripts/test: a virtualenv in .venv with the project installed.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  for candidate in python3.13 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "Python 3.12 or newer is needed (3.13 preferred); none was found on PATH." >&2
  exit 1
}

# One line per slow step, so a first start is not a silent minute.
step() {
  echo "==> $*" >&2
}

ensure_venv() {
  local extras="$1"
  if [ ! -x .venv/bin/python ]; then
    step "Creating the Python environment in .venv"
    "$(find_python)" -m venv .venv
  fi
  # Reinstall only when the dependency list changed.
  local stamp=".venv/.installed-$extras"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    step "Installing the dependencies (the first time takes a minute or two)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[$extras]"
    touch "$stamp"
  fi
}
