"""scripts/serve says what it is doing: a first start installs for a minute or more."""

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/bin/sh
# Stands in for python: `-m venv DIR` makes DIR/bin/python (this script); anything else succeeds.
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" && cp "$0" "$3/bin/python"
fi
exit 0
"""


def test_the_first_start_names_each_slow_step(tmp_path):
    shutil.copytree(REPO / "scripts", tmp_path / "scripts")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    python = bin_dir / "python3.13"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    (bin_dir / "daphne").write_text("#!/bin/sh\nexit 0\n")
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    result = subprocess.run(
        ["bash", "scripts/serve"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("==> ")]
    assert [line.split()[1] for line in lines] == [
        "Creating",
        "Installing",
        "Bringing",
        "Collecting",
        "Tidying",
    ], result.stderr

    # The next start skips what is done already.
    again = subprocess.run(
        ["bash", "scripts/serve"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert "Creating" not in again.stderr and "Installing" not in again.stderr
