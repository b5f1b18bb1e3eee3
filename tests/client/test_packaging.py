"""client/ is a package of its own: it builds into a wheel that needs only httpx and NumPy, and
works from there, away from this repository and the service's code."""

from __future__ import annotations

import email
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_client_wheel_installs_and_imports_alone(tmp_path):
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path, ROOT / "client"],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("homography_client-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = email.message_from_bytes(z.read(next(n for n in names if n.endswith("METADATA"))))
    assert all(n.startswith(("homography_client/", "homography_client-")) for n in names), names
    assert "homography_client/py.typed" in names
    requires = sorted(r.split(">")[0].split("=")[0].strip() for r in meta.get_all("Requires-Dist"))
    assert requires == ["httpx", "numpy"]

    target = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", target, wheel], check=True, capture_output=True
    )
    code = (
        "import sys, homography_client as h; "
        "assert h.__file__.startswith(sys.argv[1]), h.__file__; "
        "assert not any(m == 'app' or m.startswith('app.') for m in sys.modules); "
        "print(h.HomographyClient.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "HomographyClient"
