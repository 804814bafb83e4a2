"""ferrofaas python3-http template: serves function/handler.py's
handle(event, context) over HTTP on 127.0.0.1:$PORT, in http mode behind the
watchdog. Not for editing: write the function in function/handler.py."""
import json
import os
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "python-packages"))
sys.path.insert(0, HERE)

from function import handler  # noqa: E402


class Event:
    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body


class Context:
    def __init__(self):
        self.hostname = os.environ.get("HOSTNAME", "localhost")


def encode(body):
    if body is None:
        return b"", None
    if isinstance(body, bytes):
        return body, None
    if isinstance(body, (dict, list)):
        return json.dumps(body).encode(), "application/json"
    return str(body).encode(), None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(url.query).items()}
        event = Event(self.command, url.path, query, dict(self.headers), body)
        status, headers = 200, {}
        try:
            result = handler.handle(event, Context())
            if isinstance(result, dict) and ("statusCode" in result or "body" in result):
                status = int(result.get("statusCode", 200))
                headers = dict(result.get("headers") or {})
                result = result.get("body")
            data, content_type = encode(result)
        except Exception:
            traceback.print_exc()
            status, data, content_type = 500, b"the function raised an exception; see its logs\n", None
        if content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any

    def log_message(self, fmt, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "5000"))), Handler).serve_forever()
