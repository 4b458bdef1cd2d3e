"""`pip install .` (not only the editable install the suite runs from) gives a working
package: the engine, the backends under duplicity_ng.backends, and the console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from peers import REPO


def test_wheel_holds_engine_backends_and_entry_point(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
         "--no-cache-dir", "--target", str(target), str(REPO)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    package = target / "duplicity_ng"
    for module in ("backup.py", "rsync.py", "cli/main.py", "format/names.py"):
        assert (package / module).is_file(), module
    backends = package / "backends"
    assert not backends.is_symlink()  # a real folder in the wheel, not the checkout's link
    for module in ("base.py", "local.py", "sftp.py", "s3.py", "b2.py", "webdav.py"):
        assert (backends / module).is_file(), module
    entry_points = next(target.glob("duplicity_ng-*.dist-info")) / "entry_points.txt"
    assert "duplicity-ng = duplicity_ng.cli.main:main" in entry_points.read_text()
    # The installed copy runs on its own, from outside the checkout.
    result = subprocess.run(
        [sys.executable, "-c", "import duplicity_ng.backends.local, duplicity_ng.cli.main as m;"
         " print(m.__file__)"],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.stdout.startswith(str(target))
