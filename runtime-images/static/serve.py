"""Serve a static Space: the repo's files on 0.0.0.0:$PORT under $SPACEYARD_ROOT_PATH (stdlib only).

Requests may arrive with the root path (the router forwards it, strip_prefix is false) or without it
(a health probe on /); both are served. Directory requests get index.html, "/" gets the app file.
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class SpaceHandler(SimpleHTTPRequestHandler):
    def __init__(self, *args, root_path: str, app_file: str, **kwargs) -> None:
        self.root_path = root_path
        self.app_file = app_file
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0].split("#", 1)[0]
        if self.root_path and (path == self.root_path or path.startswith(self.root_path + "/")):
            path = path[len(self.root_path) :] or "/"
        if path == "/":
            path = "/" + self.app_file
        return super().translate_path(path)

    def send_head(self):  # noqa: ANN201 - the base class's signature
        # Without the trailing slash, relative links on the page would resolve above the Space.
        if self.root_path and self.path.split("?", 1)[0] == self.root_path:
            self.send_response(301)
            self.send_header("Location", self.root_path + "/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return super().send_head()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default=".")
    parser.add_argument("--app-file", default="index.html")
    args = parser.parse_args()
    root_path = os.environ.get("SPACEYARD_ROOT_PATH", "").rstrip("/")
    handler = partial(SpaceHandler, directory=args.dir, root_path=root_path, app_file=args.app_file)
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "7860"))), handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
