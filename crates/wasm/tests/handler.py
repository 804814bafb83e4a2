# The handler the WebAssembly tests build into a component (the library's
# tests/python.rs, and crates/cli/tests/wasm.rs through the platform): each
# path tries one thing an instance may or may not do.
import os

from wit_world.imports import outgoing_handler
from wit_world.imports.wasi_http_types import Fields, OutgoingRequest, Scheme_Http

counter = 0

def handle(event, context):
    global counter
    counter += 1
    p = event.path
    if p == "/echo":
        return {"statusCode": 201, "headers": {"X-Echo": event.method},
                "body": event.body + b" " + os.environ.get("GREETING", "-").encode()
                        + b" q=" + str(event.query.get("q")).encode()}
    if p == "/":
        return "Hello, " + (event.body.decode() or "world")
    if p == "/count":
        return str(counter)
    if p == "/secret":
        with open(os.environ.get("secret_mount_path", "/var/openfaas/secrets") + "/api-key") as f:
            return f.read()
    if p == "/file":
        try:
            with open(event.query["path"]) as f:
                return "read: " + f.read(100)
        except Exception as e:
            return "refused: " + type(e).__name__
    if p == "/write":
        try:
            with open("/var/openfaas/secrets/new", "w") as f:
                f.write("x")
            return "written"
        except Exception as e:
            return "refused: " + type(e).__name__
    if p == "/env":
        return ",".join(sorted(os.environ))
    if p == "/spin":
        while True:
            pass
    if p == "/memory":
        block = bytearray(int(event.query["mb"]) << 20)
        return str(len(block))
    if p == "/outgoing":
        req = OutgoingRequest(Fields())
        req.set_scheme(Scheme_Http())
        req.set_authority(os.environ["TARGET"])
        try:
            outgoing_handler.handle(req, None)
            return "sent"
        except Exception as e:
            return "refused: " + str(e)
    if p == "/raise":
        raise ValueError("on purpose")
    return {"statusCode": 404, "body": "no such path"}
