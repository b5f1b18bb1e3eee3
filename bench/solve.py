"""Throughput of the 4-point solvers (homographies per second), in-process and over HTTP.

    .venv/bin/python bench/solve.py            # N = 1e4, 1e5, 1e6 (about 2 minutes)
    .venv/bin/python bench/solve.py --quick    # N = 1e4, 1e5, no HTTP
    .venv/bin/python bench/solve.py --no-http  # N = 1e4, 1e5, 1e6 in-process only
    .venv/bin/python bench/solve.py --segments # where one HTTP round trip's time goes
    .venv/bin/python bench/solve.py --memory   # where one in-process ACA call's time goes

Every row is measured in the same run on the same inputs: our ACA and SKS (Numba kernels, float64
and float32), our torch ACA (the GPU/autograd path, here on CPU), Kornia's batched
get_perspective_transform, cv2.getPerspectiveTransform in a Python loop (timed on the first
20,000 items and reported as a rate) and the memory-streaming bound: the time to read the inputs
and write the outputs once (the faster of a NumPy copy and a 2-thread Numba copy of the same
bytes, output allocation included as for the solvers). Ratios are against rows of the same run.
Over HTTP, 1,000,000 items are posted to /solve/batch of a local uvicorn server as one .npz (four
formats) and the answer read with homography_client's .npz reader; each variant is also compared
with the loopback bound: the same request and answer bytes through a raw TCP socket to another
process and back, with no HTTP, parsing or solving.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numba as nb
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _server import free_port, start_server, wait_ready  # noqa: E402
from homography_client import read_npz  # noqa: E402

from app.geometry.four_point import aca_torch, solve_four_point  # noqa: E402
from app.geometry.points import image_corners  # noqa: E402


def best_time(fn: Callable[[], object], repeats: int, min_time: float = 0.3) -> float:
    fn()  # warm up (JIT, allocator)
    best = float("inf")
    start = time.perf_counter()
    for i in range(max(repeats, 1)):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        if i >= 2 and time.perf_counter() - start > min_time * repeats:
            break
    return best


@nb.njit(parallel=True, cache=True)
def _parallel_stream(inp: np.ndarray, out: np.ndarray) -> None:
    for i in nb.prange(inp.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = inp[i, j]


def streaming(src: np.ndarray, dst: np.ndarray) -> Callable[[], object]:
    """Read src+dst once, write a (B, 9) output once (what any solver must move)."""
    both = np.concatenate([src.reshape(len(src), 8), dst.reshape(len(dst), 8)], 1)

    def numpy_copy() -> np.ndarray:
        out = np.empty((len(both), 9), both.dtype)
        np.copyto(out, both[:, :9])
        return out

    def numba_copy() -> np.ndarray:
        out = np.empty((len(both), 9), both.dtype)
        _parallel_stream(both, out)
        return out

    return numpy_copy, numba_copy


def opencv_loop(src: np.ndarray, dst: np.ndarray) -> Callable[[], object]:
    import cv2

    s32, d32 = src.astype(np.float32), dst.astype(np.float32)

    def run() -> None:
        for i in range(len(s32)):
            cv2.getPerspectiveTransform(s32[i], d32[i])

    return run


def kornia_batched(src: np.ndarray, dst: np.ndarray, dtype: torch.dtype) -> Callable[[], object]:
    from kornia.geometry.transform import get_perspective_transform

    s = torch.from_numpy(src).to(dtype)
    d = torch.from_numpy(dst).to(dtype)
    return lambda: get_perspective_transform(s, d)


def make_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    corners = image_corners((128, 128))
    src = corners + rng.uniform(0, 512, (n, 1, 2))
    dst = src + rng.uniform(-32, 32, (n, 4, 2))
    return src, dst


class RawClient:
    """A lean HTTP/1.1 client on one keep-alive socket: the body goes out with one ``sendall``
    of a memoryview, the answer comes into one preallocated buffer (``recv_into``), so that the
    round trip measures the server, not an HTTP library's per-chunk Python work (httpx re-slices
    and joins 64 KiB pieces). ``marks``: ``perf_counter`` times of the last :meth:`post`: start,
    body sent, first byte of the answer, answer received."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.marks: list[float] = []

    def post(self, path: str, body: bytes, ctype: str) -> tuple[int, dict[str, str], memoryview]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        marks = [time.perf_counter()]
        self.sock.sendall(head)
        self.sock.sendall(memoryview(body))
        marks.append(time.perf_counter())
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            if not raw:
                marks.append(time.perf_counter())
            raw += chunk
        head_b, _, rest = raw.partition(b"\r\n\r\n")
        lines = head_b.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
        out = bytearray(int(headers.get("content-length", "0")))
        view = memoryview(out)
        view[: len(rest)] = rest
        pos = len(rest)
        while pos < len(out):
            n = self.sock.recv_into(view[pos:])
            if not n:
                raise ConnectionError("server closed the connection")
            pos += n
        self.marks = [*marks, time.perf_counter()]
        return status, headers, view

    def close(self) -> None:
        self.sock.close()


# a process that receives a body into a preallocated buffer and answers N preallocated bytes:
# the floor for moving a request and its answer between two processes here, with no HTTP
_LOOPBACK_SERVER = """
import socket, struct, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
inbuf, outbuf = bytearray(0), bytearray(0)
while True:
    head = c.recv(8, socket.MSG_WAITALL)
    if len(head) < 8:
        break
    n_in, n_out = struct.unpack("<II", head)
    if len(inbuf) < n_in:
        inbuf = bytearray(n_in)
    if len(outbuf) < n_out:
        outbuf = bytearray(n_out)
    view, got = memoryview(inbuf), 0
    while got < n_in:
        got += c.recv_into(view[got:n_in])
    c.sendall(memoryview(outbuf)[:n_out])
"""


def loopback(n_in: int, n_out: int) -> tuple[Callable[[], object], Callable[[], None]]:
    """A round trip of ``n_in`` bytes out and ``n_out`` bytes back through a raw loopback TCP
    socket to another process (``sendall`` of the body, ``recv_into`` preallocated buffers on
    both ends), and a function that stops that process."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOOPBACK_SERVER], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    sock = socket.create_connection(("127.0.0.1", int(proc.stdout.readline())))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = np.random.default_rng(0).integers(0, 255, n_in, dtype=np.uint8)
    answer = memoryview(bytearray(n_out))

    def call() -> None:
        sock.sendall(struct.pack("<II", n_in, n_out))
        sock.sendall(memoryview(body))
        got = 0
        while got < n_out:
            got += sock.recv_into(answer[got:])

    def stop() -> None:
        sock.close()
        proc.wait(10)

    return call, stop


HTTP_VARIANTS = {
    "npz f64 in, f64 out": (np.float64, ""),
    "npz f64 in, f32 out, compact": (np.float64, "?dtype=float32&compact=true"),
    "npz f32 in, f32 out": (np.float32, ""),
    "npz f32 in, f32 out, compact": (np.float32, "?compact=true"),
}


def http_rates(n: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Homographies per second over HTTP for each of :data:`HTTP_VARIANTS` (best of
    ``repeats``; the round trip includes sending the body and reading the answer's arrays with
    ``homography_client``'s reader, CRCs verified), and the :func:`loopback` rate for the same
    bytes."""
    src, dst = make_inputs(n, seed=1)
    port = free_port()
    proc = start_server(port)
    rates = {}
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        client = RawClient(port)
        for name, (dtype, query) in HTTP_VARIANTS.items():
            buf = io.BytesIO()
            np.savez(buf, src=src.astype(dtype), dst=dst.astype(dtype))
            body = buf.getvalue()

            sizes: list[int] = []

            def call(body: bytes = body, query: str = query, sizes: list[int] = sizes) -> None:
                status, _, answer = client.post("/solve/batch" + query, body, "application/x-npz")
                assert status == 200, bytes(answer[:200])
                assert read_npz(answer)["dst_H_src"].shape[0] == n
                sizes[:] = [len(answer)]

            http = n / best_time(call, repeats, min_time=2.0)
            wire, stop = loopback(len(body), sizes[0])
            try:
                rates[name] = (http, n / best_time(wire, repeats, min_time=2.0))
            finally:
                stop()
        client.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return rates


def http_segments(n: int, rounds: int = 4) -> None:
    """Where one float64 round trip of ``n`` items goes, client-side timers (best of
    ``rounds``): sending the body, waiting for the first byte of the answer (the server's work
    after the last byte), receiving the answer, and reading it with ``np.load`` and with
    ``read_npz``."""
    src, dst = make_inputs(n, seed=1)
    buf = io.BytesIO()
    np.savez(buf, src=src, dst=dst)
    body = buf.getvalue()
    port = free_port()
    proc = start_server(port)
    best: dict[str, float] = {}
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        client = RawClient(port)
        for _ in range(rounds):
            status, _, answer = client.post("/solve/batch", body, "application/x-npz")
            assert status == 200, bytes(answer[:200])
            np.load(io.BytesIO(answer), allow_pickle=False)["dst_H_src"]
            t1 = time.perf_counter()
            read_npz(answer)["dst_H_src"]
            t2 = time.perf_counter()
            steps = np.diff([*client.marks, t1, t2])
            names = ("send the body", "first byte of the answer", "receive the answer")
            for key, dt in zip((*names, "np.load", "read_npz"), steps, strict=True):
                best[key] = min(best.get(key, float("inf")), dt)
        client.close()
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"\nOne /solve/batch round trip, N={n:.0e} float64 in and out (best of {rounds}, ms):")
    print("  " + ", ".join(f"{k} {1e3 * v:.1f}" for k, v in best.items()))


def memory_anatomy(n: int, repeats: int = 30) -> None:
    """Where the time of one ACA call on ``n`` items goes (best of ``repeats``, ms): the public
    call, the parallel kernel on preallocated outputs, and the public call with NumPy's
    transparent-huge-page advice off (the fresh output's page faults, 4 KiB at a time)."""
    from numpy._core import multiarray

    from app.geometry import _kernels as kernels
    from app.geometry import four_point as fp

    src, dst = make_inputs(n)
    print(f"\nOne ACA call on N={n:.0e} items (best of {repeats}, ms):")
    for dt in (np.float64, np.float32):
        s, d = src.astype(dt), dst.astype(dt)
        H, reason = np.empty((n, 3, 3), dt), np.empty(n, np.uint8)
        tol = (fp._TOL[s.dtype], fp._H33_TOL)
        full = best_time(lambda s=s, d=d: solve_four_point(s, d), repeats)
        kernel = best_time(
            lambda s=s, d=d, H=H, r=reason, t=tol: kernels.aca_h33_kernel(s, d, H, r, *t), repeats
        )
        advice = multiarray._get_madvise_hugepage()
        multiarray._set_madvise_hugepage(False)
        try:
            small_pages = best_time(lambda s=s, d=d: solve_four_point(s, d), repeats)
        finally:
            multiarray._set_madvise_hugepage(advice)
        print(
            f"  {np.dtype(dt).name}: solve_four_point {1e3 * full:.2f}, kernel on preallocated "
            f"outputs {1e3 * kernel:.2f}, solve_four_point without huge pages "
            f"{1e3 * small_pages:.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 1e4, 1e5 only and no HTTP")
    ap.add_argument("--no-http", action="store_true", help="in-process rows only")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument(
        "--segments", action="store_true", help="only where one HTTP round trip's time goes"
    )
    ap.add_argument(
        "--memory", action="store_true", help="only where one in-process ACA call's time goes"
    )
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.segments:
        http_segments(1_000_000)
        return
    if args.memory:
        memory_anatomy(1_000_000)
        return
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    print(
        f"# bench/solve.py  torch {torch.__version__}, numba {nb.__version__}, "
        f"{os.cpu_count()} CPUs; homographies per second (best of {args.repeats})\n"
    )
    results: dict[int, dict[str, float]] = {}
    for n in sizes:
        src, dst = make_inputs(n)
        rows: dict[str, float] = {}
        for dt, name in ((np.float64, "f64"), (np.float32, "f32")):
            s, d = src.astype(dt), dst.astype(dt)
            for m in ("aca", "sks"):
                fn = lambda s=s, d=d, m=m: solve_four_point(s, d, method=m)  # noqa: E731
                rows[f"ours {m.upper()} {name}"] = n / best_time(fn, args.repeats)
            tdt = torch.float64 if dt == np.float64 else torch.float32
            ts, td = torch.from_numpy(s).to(tdt), torch.from_numpy(d).to(tdt)
            rows[f"ours torch ACA {name}"] = n / best_time(
                lambda ts=ts, td=td: aca_torch(ts, td, condition=False), args.repeats
            )
            rows[f"kornia get_perspective_transform {name}"] = n / best_time(
                kornia_batched(s, d, tdt), max(2, args.repeats // 2)
            )
            np_copy, nb_copy = streaming(s, d)
            rows[f"streaming bound {name}"] = n / min(
                best_time(np_copy, args.repeats), best_time(nb_copy, args.repeats)
            )
        m = min(n, 20_000)
        rows["cv2.getPerspectiveTransform loop f32"] = m / best_time(
            opencv_loop(src[:m], dst[:m]), 2
        )
        results[n] = rows

    names = list(results[sizes[0]])
    width = max(map(len, names)) + 2
    print("| solver |" + "|".join(f" N={n:.0e} " for n in sizes) + "|")
    print("|---|" + "|".join("---:" for _ in sizes) + "|")
    for name in names:
        print(f"| {name:<{width}}|" + "|".join(f" {results[n][name]:.3g} " for n in sizes) + "|")
    n = sizes[-1]
    r = results[n]
    print(f"\nRatios at N={n:.0e} (same run):")
    for p in ("f64", "f32"):
        aca = r[f"ours ACA {p}"]
        print(
            f"  ACA {p}: {aca / r[f'kornia get_perspective_transform {p}']:.1f}x kornia, "
            f"{aca / r['cv2.getPerspectiveTransform loop f32']:.0f}x cv2 loop, "
            f"{100 * aca / r[f'streaming bound {p}']:.0f}% of the streaming bound"
        )
    if not (args.quick or args.no_http):
        for name, (rate, wire) in http_rates(1_000_000, 3).items():
            p = "f32" if name.startswith("npz f32") else "f64"
            print(
                f"  HTTP /solve/batch N=1e6 ({name}): {rate:.3g}/s = "
                f"{100 * rate / r[f'ours ACA {p}']:.0f}% of the in-process ACA {p} rate, "
                f"{100 * rate / wire:.0f}% of the loopback bound for its bytes ({wire:.3g}/s = "
                f"{100 * wire / r[f'ours ACA {p}']:.0f}% of in-process)"
            )


if __name__ == "__main__":
    main()
