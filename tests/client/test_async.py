"""AsyncHomographyClient against a live server (uvicorn on loopback): concurrent estimates share
the micro-batcher, the binary solve streams, and errors raise HomographyError."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest
from homography_client import AsyncHomographyClient, HomographyClient, HomographyError

from tests.alignment.helpers import corner_error, make_pair


def test_async_client(live_url):
    pairs = [make_pair("camera", 0.05, seed, (320, 240)) for seed in range(4)]
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 640, (3000, 4, 2))
    dst = src + rng.uniform(-30, 30, src.shape)

    async def main():
        async with AsyncHomographyClient(live_url) as hc:
            await hc.wait_ready(timeout=10)
            estimates = await asyncio.gather(*(hc.estimate(a, b) for a, b, _ in pairs))
            solved = await hc.solve(src, dst)
            loss = await hc.pose_loss(
                [0, 0, -1], [1, 0, 0, 0], [0, 0, 0], [1, 0, 0, 0], xmin=2, xmax=4
            )
            with pytest.raises(HomographyError) as e:
                await hc.estimate(np.zeros((8, 8), np.uint8), pairs[0][1])
            return estimates, solved, loss, e.value

    estimates, solved, loss, error = asyncio.run(main())
    for r, (_, _, G) in zip(estimates, pairs):
        assert r.method == "network" and corner_error(r.b_H_a, G, (320, 240)) < 10
    assert max(r.timings_ms["batch_size"] for r in estimates) >= 1
    assert solved.binary and solved.valid.all()
    with HomographyClient(live_url) as sync:  # the twin answers the same
        np.testing.assert_array_equal(sync.solve(src, dst).dst_H_src, solved.dst_H_src)
        png_a = cv2.imencode(".png", pairs[0][0])[1].tobytes()
        np.testing.assert_allclose(
            sync.estimate(png_a, pairs[0][1]).b_H_a, estimates[0].b_H_a, rtol=1e-5, atol=1e-4
        )
    np.testing.assert_allclose(loss.loss, [1 / 8])
    assert error.status == 422 and error.field == "image_a"
