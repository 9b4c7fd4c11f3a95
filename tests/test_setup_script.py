"""scripts/setup.sh: the default set-up builds no learn2learn (only --learn2learn and --dev do), and an option it
does not know stops it before anything is installed."""

import subprocess

from conftest import REPO


def test_an_unknown_option_stops_the_set_up_before_it_installs_anything(tmp_path):
    result = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh"), "--learn2lean"], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "VENV": str(tmp_path / "venv")}, timeout=60)
    assert result.returncode == 2 and "unknown option '--learn2lean'" in result.stderr
    assert not (tmp_path / "venv").exists()
