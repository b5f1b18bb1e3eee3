"""``homography-serve``: run the API with uvicorn using the service settings."""

from __future__ import annotations

import argparse

import uvicorn

from app.core.config import get_settings


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description="Serve the homography API.")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--workers", type=int, default=settings.workers)
    parser.add_argument("--app", default="app.main:app", help="ASGI app (import string)")
    args = parser.parse_args(argv)
    uvicorn.run(
        args.app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        # the app drains on SIGTERM first (HOMOGRAPHY_DRAIN_SECONDS, cutting what is left), so
        # uvicorn's own wait for open connections afterwards only has stragglers to close
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
