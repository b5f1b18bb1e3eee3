"""The browser side: the demo page and the self-hosted API docs (``pages.install_web``)."""
