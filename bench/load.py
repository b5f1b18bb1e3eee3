"""Load and soak test of a live server on 127.0.0.1: bench/locustfile.py's users, driven through
Locust's library API in stages of rising concurrency, with the server's memory per stage.

    .venv/bin/python bench/load.py                      # starts its own server, ~2.5 minutes
    .venv/bin/python bench/load.py --stage-seconds 5    # quicker
    .venv/bin/python bench/load.py --soak 300           # plus a 5-minute soak at concurrency 8
    .venv/bin/python bench/load.py --url http://127.0.0.1:8000 --pid 1234   # a running server

Per stage (1, 4, 16, 64 users in a closed loop, the locustfile's default mix): answered requests
per second, p50/p95/p99 latency of answered requests (Locust's, rounded to 2 significant digits),
503 shed (with Retry-After; the user then waits Retry-After x 0.1), errors (other 4xx/5xx,
timeouts, refused connections, 503 without Retry-After), and the server's resident memory before
and after. Saturation must answer 503 + Retry-After rather than letting timeouts pile up; the
process must survive; memory must stay flat over a soak. For Locust's own UI or CSV output, run
``locust -f bench/locustfile.py`` instead (README, "Load test").
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import gevent
import locustfile
from _server import free_port, start_server
from locust.env import Environment
from locust.stats import StatsEntry
from locustfile import Mix


def rss_mib(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except OSError:
        return 0


def run_stage(url: str, users: int, seconds: float, options) -> tuple[Environment, float]:
    """``users`` Mix users for ``seconds``; they finish their request in flight before they
    stop (so the server sees no cut uploads). Returns the environment and the elapsed time."""
    env = Environment(user_classes=[Mix], host=url, parsed_options=options, stop_timeout=60)
    runner = env.create_local_runner()
    start = time.perf_counter()
    runner.start(users, spawn_rate=users)
    gevent.sleep(seconds)
    runner.stop()
    elapsed = time.perf_counter() - start
    runner.quit()
    return env, elapsed


def summary(env: Environment, seconds: float) -> dict:
    entries = list(env.stats.entries.values())
    answered = StatsEntry(env.stats, "answered", "", use_response_times_cache=False)
    for e in entries:
        if e.method != "SHED":
            answered.extend(e)
    errors = sum(e.num_failures for e in entries)
    ok = answered.num_requests - answered.num_failures
    total = sum(e.num_requests for e in entries)
    p = answered.get_response_time_percentile
    return {
        "rps": ok / seconds,
        "p50": p(0.5),
        "p95": p(0.95),
        "p99": p(0.99),
        "shed": sum(e.num_requests for e in entries if e.method == "SHED"),
        "errors": errors,
        "error_pct": 100 * errors / max(total, 1),
        "detail": {
            f"{e.method} {e.name}: {e.error}": e.occurrences for e in env.stats.errors.values()
        },
        "shed_by": {e.name: e.num_requests for e in entries if e.method == "SHED"},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default=None, help="a running server on loopback (else start one)")
    ap.add_argument("--pid", type=int, default=None, help="its process id, for the RSS column")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--stage-seconds", type=float, default=30.0)
    ap.add_argument("--soak", type=float, default=0.0, help="seconds of soak after the stages")
    ap.add_argument("--solve-batch-items", type=int, default=65536)
    for option, (name, default) in locustfile.WEIGHTS.items():
        ap.add_argument("--" + option.replace("_", "-"), type=int, default=default, help=name)
    args = ap.parse_args()
    options = SimpleNamespace(**{**vars(args), "retry_after_scale": 0.1})
    weights = {name: getattr(args, option) for option, (name, _) in locustfile.WEIGHTS.items()}
    Mix.set_weights(weights)

    proc, url, pid = None, args.url, args.pid
    if url is None:
        port = free_port()
        url, proc = f"http://127.0.0.1:{port}", start_server(port)
        pid = proc.pid
    elif not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise SystemExit("refusing to load-test anything but a loopback address")
    try:
        for _ in range(900):
            if _status(url + "/ready") == 200:
                break
            time.sleep(0.2)
        else:
            raise SystemExit("server did not become ready")
        check, elapsed = run_stage(url, 4, 3.0, options)
        if check.stats.errors:  # every request of the mix must be valid
            raise SystemExit(f"the mix does not run cleanly: {summary(check, elapsed)}")
        print(
            f"# bench/load.py (Locust) against {url}; weights {weights}; "
            f"{args.stage_seconds:.0f} s per stage\n"
        )
        print("| concurrency | req/s | p50 ms | p95 ms | p99 ms | 503 shed | errors | RSS MiB |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        failed = False
        for c in args.concurrency:
            before = rss_mib(pid)
            s = summary(*run_stage(url, c, args.stage_seconds, options))
            after = rss_mib(pid)
            print(
                f"| {c} | {s['rps']:.1f} | {s['p50']:.0f} | {s['p95']:.0f} | {s['p99']:.0f} | "
                f"{s['shed']} | {s['errors']} ({s['error_pct']:.1f} %) | "
                f"{before:.0f} -> {after:.0f} |",
                flush=True,
            )
            for what, n in s["detail"].items():
                print(f"    {n} x {what}")
            if s["shed"]:
                print("    shed: " + ", ".join(f"{n} {k}" for k, n in sorted(s["shed_by"].items())))
            failed |= s["errors"] > 0
            if proc is not None and proc.poll() is not None:
                print("server process died")
                return 1
        if args.soak:
            env = Environment(user_classes=[Mix], host=url, parsed_options=options, stop_timeout=60)
            runner = env.create_local_runner()
            runner.start(8, spawn_rate=8)
            samples, end = [rss_mib(pid)], time.monotonic() + args.soak
            while time.monotonic() < end:
                gevent.sleep(min(30.0, max(0.0, end - time.monotonic())))
                samples.append(rss_mib(pid))
            runner.stop()
            runner.quit()
            failed |= summary(env, args.soak)["errors"] > 0
            print(
                f"\nsoak {args.soak:.0f} s at concurrency 8: RSS every 30 s (MiB) "
                f"{[round(s) for s in samples]}; growth first->last "
                f"{samples[-1] - samples[0]:+.0f} MiB"
            )
        alive = _status(url + "/health") == 200
        print(f"\nserver alive after the run: {alive}")
        return 1 if failed or not alive else 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
