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

# The interface's translations (locale/*/LC_MESSAGES/*.po) compiled to the .mo files Django
# reads, with GNU gettext's msgfmt (Debian's gettext, installed here when missing and root).
compile_messages() {
  compgen -G "locale/*/LC_MESSAGES/*.po" >/dev/null || return 0  # no catalogue yet: English
  if ! command -v msgfmt >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      step "Installing Debian's gettext (msgfmt) for the translations"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext >/dev/null
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo apt-get update -qq
      sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext >/dev/null
    else
      echo "No msgfmt (Debian's gettext) and no root to install it: the interface stays English." >&2
      return 0
    fi
  fi
  step "Compiling the translations"
  .venv/bin/python manage.py compilemessages --ignore=.venv --verbosity 0
}
