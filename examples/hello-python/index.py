"""A small HTTP function: answers every request with a greeting and an echo.

The watchdog starts this once and forwards requests to it; it listens on the
port given in $PORT, on loopback only.
"""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        reply = {
            "message": f"Hello from Python, {body.strip() or 'stranger'}!",
            "method": self.command,
            "path": self.path,
            "call_id": self.headers.get("X-Call-Id"),
        }
        data = (json.dumps(reply) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

    def log_message(self, fmt, *args):
        print(f"{self.command} {self.path}", flush=True)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
