"""``python -m app.services.warmup``: compile every Numba kernel of the service into Numba's
on-disk cache, ahead of time (``make install``, the image builds), so that a server start only
loads them: the solvers (:mod:`app.geometry._kernels`, every layout a request can produce), the
refinement's CPU passes (:mod:`app.alignment._kernels`) and the JSON pre-scanner
(:mod:`app.services.json_scan`). The start-up warm-up (:mod:`app.services.startup`) runs the
same functions and finds them all in the cache.
"""

from __future__ import annotations


def main() -> None:
    from app.geometry.kernel_cache import prepare_kernel_cache

    cache = prepare_kernel_cache()  # before any kernel is imported: Numba picks its cache then

    from app.alignment.warmup import warm_up_alignment
    from app.geometry.warmup import warm_up_solvers
    from app.services.json_scan import warm_up as warm_up_json_scan

    solvers = warm_up_solvers().info["warmup_s"]
    refine = warm_up_alignment("cpu")
    warm_up_json_scan()
    where = cache or "beside the sources (app/*/__pycache__)"
    print(
        f"kernels ready: solvers {solvers} s, refinement {refine:.3f} s, JSON scan; "
        f"Numba cache: {where}"
    )


if __name__ == "__main__":
    main()
