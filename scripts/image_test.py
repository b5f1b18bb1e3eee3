"""``make image-test``: build the CPU image and serve it from its own file system.

No Docker engine and no registry here, so, as root:

1. tools: podman and debootstrap (installed with apt-get when missing);
2. base: Debian bookworm with python3.11, made from Debian's packages (``debootstrap`` then
   ``podman import``); kept in podman's storage, and as a tarball under
   ``~/.cache/homography-service``, between runs;
3. build: ``podman build --isolation=chroot --storage-driver=vfs -f docker/Dockerfile.cpu`` on
   that base (``PYTHON_IMAGE``); pip also searches ``$PIP_FIND_LINKS`` when set (this machine's
   local CPU torch wheel) and trusts ``$PIP_CERT`` when set (a proxy's CA), both mounted into the
   build;
4. serve: the image mounted, then in a private mount namespace bound read-only (a read-only root
   file system, as ``readOnlyRootFilesystem`` in deploy/), with /proc, /dev and a tmpfs on /tmp,
   ``chroot`` as the image's user with the image's environment, running the image's command on
   127.0.0.1 (loopback only);
5. check: /health, /ready (time to ready; the solver kernels loaded from the cache the build
   compiled), one /estimate, one /solve, the demo page and the docs with their assets; SIGTERM
   and the drain's log line.

One summary line is printed last. Exit status 0 only when every check passed.

    make image-test                    # or: sudo .venv/bin/python scripts/image_test.py
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STORAGE = ["--storage-driver=vfs"]
BASE = "localhost/homography-base:bookworm"
IMAGE = "localhost/homography-service:cpu"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "homography-service"
BASE_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")


def step(name: str) -> None:
    print(f"\n== image-test: {name}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", shlex.join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def podman(*args: str, capture: bool = False) -> str:
    r = run(["podman", *STORAGE, *args], capture_output=capture, text=True)
    return r.stdout.strip() if capture else ""


def ensure_tools() -> None:
    missing = [t for t in ("podman", "debootstrap") if shutil.which(t) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"image-test needs {missing} (apt-get install, as root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "podman", "debootstrap"], env=env)


def image_exists(name: str) -> bool:
    cmd = ["podman", *STORAGE, "image", "exists", name]
    return subprocess.run(cmd, check=False).returncode == 0


def ensure_base() -> str:
    """The Debian base image (built once, then reused)."""
    if image_exists(BASE):
        return "cached image"
    tarball = CACHE / "debian-bookworm-python3.tar"
    how = "cached tarball"
    if not tarball.exists():
        how = "debootstrap"
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="rootfs-", dir=CACHE) as rootfs:
            os.chmod(rootfs, 0o755)  # the image's "/": mkdtemp made it 0700, unusable to users
            run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm",
                 rootfs, MIRROR])  # fmt: skip
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for path in (Path(rootfs) / junk).glob("*"):
                    if path.is_file():
                        path.unlink()
            partial = tarball.with_suffix(".partial")
            run(["tar", "-C", rootfs, "--numeric-owner", "-cf", str(partial), "."])
            partial.rename(tarball)
    podman("import", "--change", "CMD=/bin/bash", str(tarball), BASE)
    return how


def build() -> None:
    # --layers=false: one commit per stage (with vfs every per-instruction layer is a full copy);
    # the docker format keeps HEALTHCHECK
    cmd = ["build", "--isolation=chroot", "--layers=false", "--format=docker"]
    cmd += ["-f", "docker/Dockerfile.cpu", "-t", IMAGE]
    cmd += ["--build-arg", f"PYTHON_IMAGE={BASE}"]
    links = os.environ.get("PIP_FIND_LINKS", "")
    if links and Path(links).is_dir():  # e.g. this machine's CPU wheel of torch
        cmd += ["--volume", f"{links}:/wheels:ro", "--build-arg", "PIP_FIND_LINKS=/wheels"]
        cmd += ["--build-arg", "TORCH_INDEX_URL=https://pypi.org/simple"]
        cmd += ["--build-arg", f"TORCH_VERSION={_local_torch(Path(links))}"]
    cert = os.environ.get("PIP_CERT", "")
    if cert and Path(cert).is_file():  # a proxy's CA that the Debian base does not trust
        cmd += ["--volume", f"{cert}:/etc/pip-ca.crt:ro", "--build-arg", "PIP_CERT=/etc/pip-ca.crt"]
    podman(*cmd, ".")
    # the previous build, now untagged (vfs keeps a full copy of every image)
    subprocess.run(["podman", *STORAGE, "image", "prune", "-f"], check=False, capture_output=True)


def _local_torch(links: Path) -> str:
    """The version of the torch wheel in ``links`` that matches constraints/cpu.txt."""
    pinned = next(
        line.split("==")[1].strip()
        for line in (ROOT / "constraints" / "cpu.txt").read_text().splitlines()
        if line.startswith("torch==")
    )
    for wheel in sorted(links.glob(f"torch-{pinned}*-cp311-*.whl")):
        return wheel.name.split("-")[1]
    return pinned


def image_config() -> dict:
    raw = podman("image", "inspect", IMAGE, capture=True)
    return json.loads(raw)[0]["Config"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """The image's command, run from the mounted image (read-only) as the image's user."""

    def __init__(self, mnt: str, config: dict, port: int) -> None:
        uid = config.get("User") or "0"
        gid = uid
        for line in (Path(mnt) / "etc" / "passwd").read_text().splitlines():
            name, _, puid, pgid, _, home, _ = line.split(":")
            if uid in (name, puid):
                uid, gid, self.home = puid, pgid, home
                break
        env = dict(e.split("=", 1) for e in config.get("Env", []))
        env.update(HOME=self.home, HOMOGRAPHY_HOST="127.0.0.1", HOMOGRAPHY_PORT=str(port))
        workdir = config.get("WorkingDir") or "/"
        cmd = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
        self.uid = uid
        self.root = tempfile.mkdtemp(prefix="image-root-")
        script = f"""set -e
mount --bind {shlex.quote(mnt)} {self.root}
mount -o remount,bind,ro {self.root}
mount -t proc proc {self.root}/proc
mount --rbind /dev {self.root}/dev
mount -t tmpfs -o mode=1777,size=512m tmpfs {self.root}/tmp
exec chroot --userspec={uid}:{gid} {self.root} /usr/bin/env -i -C {shlex.quote(workdir)} \
{" ".join(shlex.quote(f"{k}={v}") for k, v in env.items())} {shlex.join(cmd)}
"""
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            print("   |", line.rstrip()[:200], flush=True)

    def events(self, name: str) -> list[dict]:
        out = []
        for line in self.lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == name:
                out.append(record)
        return out

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        os.rmdir(self.root)
        return self.proc.returncode


def _pair() -> tuple[bytes, bytes, np.ndarray]:
    """A textured 320x240 image and a view of it under a known b_H_a (PNG bytes)."""
    rng = np.random.default_rng(7)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, (240, 320)).astype(np.float32), (0, 0), 3)
    img = cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    b_H_a = np.array([[1.0, 0.02, 6.0], [-0.02, 1.0, -4.0], [0.0, 0.0, 1.0]])
    warped = cv2.warpPerspective(img, b_H_a, (320, 240), borderMode=cv2.BORDER_REFLECT)
    return cv2.imencode(".png", img)[1].tobytes(), cv2.imencode(".png", warped)[1].tobytes(), b_H_a


def check(served: Served, url: str, limit_s: float) -> dict:
    """/health, /ready, one /estimate, one /solve, the page and the docs; the figures for the
    summary."""
    out: dict = {}
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=30) as c:
        while True:
            if served.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {served.proc.returncode}")
            try:
                if "health_s" not in out and c.get("/health").status_code == 200:
                    out["health_s"] = time.perf_counter() - t0
                r = c.get("/ready")
                if r.status_code == 200:
                    out["ready_s"] = time.perf_counter() - t0
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - t0 > limit_s:
                raise RuntimeError(f"/ready not 200 within {limit_s} s")
            time.sleep(0.05)
        engines = r.json()["engines"]
        out["engines"] = sorted(n for n, e in engines.items() if e["ready"])
        out["kernels_s"] = engines["solvers"]["info"]["warmup_s"]
        a, b, b_H_a = _pair()
        r = c.post("/estimate", files={"image_a": ("a.png", a), "image_b": ("b.png", b)})
        r.raise_for_status()
        est = np.array(r.json()["b_H_a"])
        corners = np.array([[0, 0, 1], [319, 0, 1], [319, 239, 1], [0, 239, 1]], float).T
        proj = lambda H: (H @ corners)[:2] / (H @ corners)[2]  # noqa: E731
        out["estimate_err_px"] = float(np.linalg.norm(proj(est) - proj(b_H_a), axis=0).mean())
        src = [[[0, 0], [1, 0], [1, 1], [0, 1]]]
        dst = [[[0, 0], [2, 0], [2, 2], [0, 2]]]
        r = c.post("/solve", json={"src": src, "dst": dst})
        r.raise_for_status()
        H = np.array(r.json()["dst_H_src"][0])
        if not np.allclose(H, np.diag([2.0, 2.0, 1.0]), atol=1e-9):
            raise RuntimeError(f"/solve answered {H.tolist()}")
        out["solve"] = "ok"
        # the demo page and the offline docs ship in the image (package data, fastapi-offline)
        for path in ("/", "/static/demo.js", "/docs", "/static/docs/swagger-ui-bundle.js"):
            r = c.get(path)
            if r.status_code != 200 or not r.content:
                raise RuntimeError(f"GET {path} answered {r.status_code}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ready-limit", type=float, default=180, help="seconds to /ready")
    parser.add_argument("--skip-build", action="store_true", help="serve the last build")
    args = parser.parse_args()
    os.chdir(ROOT)
    if os.geteuid() != 0:
        raise SystemExit("image-test runs as root (debootstrap, mounts, chroot)")
    times: dict[str, float] = {}
    t = time.perf_counter()
    step("tools")
    ensure_tools()
    step("base image")
    base_how = ensure_base()
    times["base"] = time.perf_counter() - t
    if not args.skip_build:
        step("build")
        t = time.perf_counter()
        build()
        times["build"] = time.perf_counter() - t
    config = image_config()
    size = podman("image", "inspect", "--format", "{{.Size}}", IMAGE, capture=True)
    step("serve from the image's file system (read-only root, chroot as its user)")
    mnt = podman("image", "mount", IMAGE, capture=True)
    port = _free_port()
    served = Served(mnt, config, port)
    status, figures, error = "FAIL", {}, ""
    try:
        figures = check(served, f"http://127.0.0.1:{port}", args.ready_limit)
        status = "OK"
    except Exception as exc:  # reported in the summary line
        error = f"{type(exc).__name__}: {exc}"
    finally:
        code = served.stop()
        subprocess.run(["podman", *STORAGE, "image", "unmount", IMAGE], check=False,
                       capture_output=True)  # fmt: skip
    drained = served.events("drain_complete")
    copied = served.events("kernel_cache_copied")
    if status == "OK" and not drained:
        status, error = "FAIL", f"no drain_complete log line (exit {code})"
    parts = [
        f"image-test: {status}",
        f"image={IMAGE} ({int(size) / 2**30:.2f} GiB)",
        f"base={base_how} {times['base']:.0f}s",
        f"build={times['build']:.0f}s" if "build" in times else "build=skipped",
        f"user={served.uid} read-only-root",
    ]
    if figures:
        parts += [
            f"health={figures['health_s']:.2f}s ready={figures['ready_s']:.2f}s",
            f"kernels={figures['kernels_s']:.2f}s"
            + (" (baked cache copied to /tmp)" if copied else " (cache not copied)"),
            f"engines={','.join(figures['engines'])}",
            f"/estimate=200 (corner err {figures['estimate_err_px']:.1f}px) /solve=200",
            "/ /docs=200",
        ]
    if drained:
        parts.append(f"SIGTERM: drained, cut={drained[0]['cut']}, exit={code}")
    if error:
        parts.append(f"error: {error}")
    print("\n" + " | ".join(parts), flush=True)
    return 0 if status == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
