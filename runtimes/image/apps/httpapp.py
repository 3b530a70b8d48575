"""The example image's HTTP app: answers ``GET /`` with 200 and ``ok``; ``GET /work?n=N`` hashes
N rounds first (CPU work for a throughput scenario).  Standard library only: it runs on the
image's own Debian python3, as user nobody, on ``$PORT`` (default 8000)."""

from __future__ import annotations

import hashlib
import http.server
import os
import signal
import sys
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        url = urllib.parse.urlsplit(self.path)
        if url.path not in ("/", "/work"):
            self.send_error(404)
            return
        rounds = int(urllib.parse.parse_qs(url.query).get("n", ["0"])[0] or 0)
        digest = b"ok"
        for _ in range(min(rounds, 1_000_000)):
            digest = hashlib.sha256(digest).digest()
        body = b"ok\n" if url.path == "/" else digest.hex().encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - one line per request is noise
        pass


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    server = http.server.ThreadingHTTPServer(("", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on port {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
