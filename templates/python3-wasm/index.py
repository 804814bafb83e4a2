"""ferrofaas python3-wasm template: function/handler.py's handle(event,
context) as a WebAssembly component (the wasi:http incoming-handler), run
in a fresh instance for every request. Not for editing: write the function
in function/handler.py.

The modules are imported when the component is built (componentize-py
snapshots the interpreter after importing them), so code at a module's top
level runs once, at build time: read the environment and secrets inside
handle()."""
import json
import os
import sys
import traceback
from urllib.parse import parse_qs, urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.wasi_http_types import Fields, OutgoingBody, OutgoingResponse, ResponseOutparam

from function import handler

# wasi:io output streams take at most this much per blocking write.
WRITE_SIZE = 4096


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


def method_name(method):
    name = type(method).__name__
    if name == "Method_Other":
        return method.value
    return name[len("Method_"):].upper()


def read_body(request):
    incoming = request.consume()
    stream = incoming.stream()
    chunks = []
    while True:
        try:
            chunks.append(stream.blocking_read(65536))
        except Err as e:
            if isinstance(e.value, StreamError_Closed):
                break
            raise
    stream.__exit__(None, None, None)
    return b"".join(chunks)


def encode(body):
    if body is None:
        return b"", None
    if isinstance(body, bytes):
        return body, None
    if isinstance(body, (dict, list)):
        return json.dumps(body).encode(), "application/json"
    return str(body).encode(), None


def respond(response_out, status, headers, data):
    fields = [(k.lower(), str(v).encode()) for k, v in headers.items()]
    response = OutgoingResponse(Fields.from_list(fields))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    stream = body.write()
    try:
        for i in range(0, len(data), WRITE_SIZE):
            stream.blocking_write_and_flush(data[i:i + WRITE_SIZE])
    except Err as e:
        # The caller went away: nothing more to send.
        if isinstance(e.value, StreamError_Closed):
            return
        raise
    stream.__exit__(None, None, None)
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out):
        url = urlsplit(request.path_with_query() or "/")
        query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(url.query).items()}
        headers = {}
        for name, value in request.headers().entries():
            headers[name] = value.decode("latin-1")
        event = Event(method_name(request.method()), url.path, query, headers, read_body(request))
        status, out_headers = 200, {}
        try:
            result = handler.handle(event, Context())
            if isinstance(result, dict) and ("statusCode" in result or "body" in result):
                status = int(result.get("statusCode", 200))
                out_headers = dict(result.get("headers") or {})
                result = result.get("body")
            data, content_type = encode(result)
            if content_type and not any(k.lower() == "content-type" for k in out_headers):
                out_headers["Content-Type"] = content_type
        except Exception:
            traceback.print_exc()
            status, out_headers = 500, {}
            data = b"the function raised an exception; see its logs\n"
        respond(response_out, status, out_headers, data)
