"""Locust load test of homography-service: one user class per endpoint mix.

    make serve &
    .venv/bin/locust -f bench/locustfile.py --headless -u 16 -r 16 -t 60s \\
        --host http://127.0.0.1:8000 --csv /tmp/hs      # or without --headless: the web UI
    .venv/bin/locust -f bench/locustfile.py ... --weight-auto 0 --weight-solve-binary 5

Users: ``NetworkEstimate`` (``/estimate``, HomographyNet), ``AutoEstimate``
(``/estimate?method=auto``), ``Refine`` (``/refine``), ``SolveJson`` (``/solve``, 256 items),
``SolveBinary`` (``/solve/batch``, ``--solve-batch-items`` items as ``.npz``) and ``PoseLoss``
(``/pose-loss``, 64 pairs); their shares are the ``--weight-*`` options (0 leaves a class out),
or name the classes to run on the command line. Every user sends its next request as soon as
the last one is answered (a closed loop: ``-u`` is the concurrency).

The images are the demo page's bundled sample pair (``app/web/static/samples``), so this file
needs only Locust and NumPy. A 503 (load shed, with ``Retry-After``) is not a failure: it is
reported under the request type ``SHED``, and the user waits ``Retry-After`` times
``--retry-after-scale`` before its next request, as a well-behaved client would. Failures are
everything else: other 4xx/5xx, timeouts, refused connections, and 503s without
``Retry-After``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gevent
import numpy as np
from locust import FastHttpUser, constant, events, task
from urllib3 import encode_multipart_formdata

SAMPLES = Path(__file__).resolve().parents[1] / "app" / "web" / "static" / "samples"
PAIR = ("coffee_a.jpg", "coffee_b.jpg")

WEIGHTS = {  # option name -> (user class name, default weight)
    "weight_network": ("NetworkEstimate", 3),
    "weight_auto": ("AutoEstimate", 1),
    "weight_refine": ("Refine", 1),
    "weight_solve_json": ("SolveJson", 3),
    "weight_solve_binary": ("SolveBinary", 1),
    "weight_pose_loss": ("PoseLoss", 2),
}

shed_without_retry_after = 0
"""503 answers that lacked Retry-After (counted as failures too); read by bench/load.py."""


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("homography-service")
    for option, (name, default) in WEIGHTS.items():
        group.add_argument(
            "--" + option.replace("_", "-"),
            type=int,
            default=default,
            help=f"weight of {name} users (default {default}; 0 leaves them out)",
        )
    group.add_argument(
        "--solve-batch-items", type=int, default=65536, help="items per /solve/batch request"
    )
    group.add_argument(
        "--retry-after-scale",
        type=float,
        default=1.0,
        help="after a 503, wait Retry-After times this (0: retry at once)",
    )


@events.init.add_listener
def _apply_weights(environment, **_kw) -> None:
    options = environment.parsed_options
    if options is None:  # library use (bench/load.py) sets the weights itself
        return
    weights = {name: getattr(options, option) for option, (name, _) in WEIGHTS.items()}
    if not any(weights.values()):
        raise SystemExit("every request kind has weight 0")
    Mix.set_weights(weights)
    if environment.user_classes == [Mix]:  # asked for by name
        return
    for cls in environment.user_classes:
        cls.weight = weights.get(cls.__name__, 0)
    # the runner reads the environment's list; a class of weight 0 is left out
    environment.user_classes[:] = [c for c in environment.user_classes if c.weight > 0]


def _multipart(extra: dict[str, str] | None = None) -> tuple[bytes, str]:
    fields: dict = {
        "image_a": (PAIR[0], (SAMPLES / PAIR[0]).read_bytes(), "image/jpeg"),
        "image_b": (PAIR[1], (SAMPLES / PAIR[1]).read_bytes(), "image/jpeg"),
    }
    fields.update(extra or {})
    return encode_multipart_formdata(fields)


def _solve_json(items: int = 256) -> bytes:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 640, (items, 4, 2))
    dst = src + rng.uniform(-30, 30, src.shape)
    return json.dumps({"src": src.tolist(), "dst": dst.tolist()}).encode()


def _solve_npz(items: int) -> bytes:
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 640, (items, 4, 2))
    buf = io.BytesIO()
    np.savez(buf, src=src, dst=src + rng.uniform(-30, 30, src.shape))
    return buf.getvalue()


def _pose_loss(pairs: int = 64) -> bytes:
    rng = np.random.default_rng(3)
    q = rng.normal(size=(pairs, 4))
    body = {
        "estimated": {"position": rng.normal(size=(pairs, 3)).tolist(), "quaternion": q.tolist()},
        "true": {
            "position": rng.normal(size=(pairs, 3)).tolist(),
            "quaternion": (q + 0.01).tolist(),
        },
        "xmin": 1.0,
        "xmax": 10.0,
    }
    return json.dumps(body).encode()


@dataclass
class Request:
    """One kind of request of the mix; ``build`` makes the body on first use (per process)."""

    name: str
    build: Callable[[Any], tuple[bytes, str]]
    body: bytes = b""
    content_type: str = ""
    key: Any = None

    def payload(self, options: Any) -> tuple[bytes, str]:
        key = getattr(options, "solve_batch_items", None)
        if not self.body or key != self.key:
            self.body, self.content_type = self.build(options)
            self.key = key
        return self.body, self.content_type


JSON = "application/json"
REQUESTS = {
    "NetworkEstimate": Request("/estimate", lambda o: _multipart()),
    "AutoEstimate": Request("/estimate?method=auto", lambda o: _multipart()),
    "Refine": Request("/refine", lambda o: _multipart({"options": '{"max_seconds": 2.0}'})),
    "SolveJson": Request("/solve", lambda o: (_solve_json(), JSON)),
    "SolveBinary": Request(
        "/solve/batch",
        lambda o: (_solve_npz(getattr(o, "solve_batch_items", 65536)), "application/x-npz"),
    ),
    "PoseLoss": Request("/pose-loss", lambda o: (_pose_loss(), JSON)),
}


def send(user: FastHttpUser, kind: str) -> None:
    """POST one request of ``kind``; a 503 with Retry-After is reported as ``SHED``."""
    global shed_without_retry_after
    options = user.environment.parsed_options
    req = REQUESTS[kind]
    body, content_type = req.payload(options)
    with user.client.post(
        req.name, data=body, headers={"content-type": content_type}, catch_response=True
    ) as resp:
        if resp.status_code == 503:
            retry_after = resp.headers.get("retry-after")
            if retry_after is None:
                shed_without_retry_after += 1
                resp.failure("503 without Retry-After")
                return
            resp.request_meta["request_type"] = "SHED"
            resp.success()
            gevent.sleep(float(retry_after) * getattr(options, "retry_after_scale", 1.0))
        elif resp.status_code != 200:
            resp.failure(f"{resp.status_code}: {(resp.text or '')[:200]}")


class _ServiceUser(FastHttpUser):
    """Sends its one kind of request in a closed loop."""

    abstract = True
    wait_time = constant(0)
    network_timeout = 60.0
    connection_timeout = 10.0

    @task
    def post(self) -> None:
        send(self, type(self).__name__)


class NetworkEstimate(_ServiceUser):
    weight = 3


class AutoEstimate(_ServiceUser):
    weight = 1


class Refine(_ServiceUser):
    weight = 1


class SolveJson(_ServiceUser):
    weight = 3


class SolveBinary(_ServiceUser):
    weight = 1


class PoseLoss(_ServiceUser):
    weight = 2


class Mix(FastHttpUser):
    """Every request of the mix from each user, drawn by the weights (``bench/load.py``'s user:
    one user alone still sends the whole mix). Run it by name: ``locust -f ... Mix``."""

    wait_time = constant(0)
    network_timeout = 60.0
    connection_timeout = 10.0
    weight = 1  # left out of the default run (it would double the mix): see _apply_weights

    @classmethod
    def set_weights(cls, weights: dict[str, int]) -> None:
        cls.tasks = [
            partial(send, kind=kind)  # type: ignore[misc]
            for kind, w in weights.items()
            for _ in range(w)
        ]


Mix.set_weights({name: default for name, default in WEIGHTS.values()})
