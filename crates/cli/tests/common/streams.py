# An http-mode function for the streaming tests, Python's standard library
# only: a WebSocket server (RFC 6455, unfragmented frames), server-sent
# events that wait between events for the test to say "go on", and a server
# that switches protocols unasked (what a hostile function could do).
import base64, hashlib, http.server, os, struct, threading

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
go_on = threading.Event()


def recv_frame(r):
    head = r.read(2)
    if len(head) < 2:
        return None
    op, n = head[0] & 0x0F, head[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", r.read(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", r.read(8))[0]
    mask = r.read(4) if head[1] & 0x80 else bytes(4)
    data = r.read(n)
    # XOR with the mask, a machine word at a time.
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return op, (int.from_bytes(data, "big") ^ key).to_bytes(n, "big") if n else b""


def send_frame(w, op, data):
    n = len(data)
    if n < 126:
        head = bytes([0x80 | op, n])
    elif n < 65536:
        head = bytes([0x80 | op, 126]) + struct.pack(">H", n)
    else:
        head = bytes([0x80 | op, 127]) + struct.pack(">Q", n)
    w.write(head + data)
    w.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        if self.path.startswith("/ws"):
            return self.websocket()
        if self.path.startswith("/events"):
            go_on.clear()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.chunk(b"id: 1\ndata: first\n\n")
            # The second event only once the test has seen the first: a
            # response held back anywhere on the way never gets there.
            if not go_on.wait(30):
                return self.chunk(b"")
            self.chunk(b"id: 2\ndata: second\n\n")
            self.chunk(b"")
            return
        if self.path.startswith("/go-on"):
            go_on.set()
            return self.reply(200, b"going on\n")
        if self.path.startswith("/rogue"):
            # 101 to a plain request, then anything at all.
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
            self.wfile.flush()
            self.close_connection = True
            return
        self.reply(200, b"pid=%d\n" % os.getpid())

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key")
        if self.headers.get("Upgrade", "").lower() != "websocket" or not key:
            return self.reply(426, b"a WebSocket handshake was expected\n")
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("X-Replica", str(os.getpid()))
        self.end_headers()
        self.wfile.flush()
        # The server speaks first: the tunnel carries both ways at once.
        send_frame(self.wfile, 1, b"hello from %d" % os.getpid())
        while True:
            frame = recv_frame(self.rfile)
            if frame is None:
                break
            op, data = frame
            if op == 8:
                send_frame(self.wfile, 8, data[:2])
                break
            if op == 9:
                send_frame(self.wfile, 10, data)
            elif op == 1:
                send_frame(self.wfile, 1, b"echo: " + data)
            elif op == 2:
                send_frame(self.wfile, 2, data[::-1])
        self.close_connection = True


port = int(os.environ.get("PORT", "5000"))
# Behind a watchdog, loopback; as a container's own server (no watchdog in
# front), every address.
bind = os.environ.get("BIND", "127.0.0.1")
http.server.ThreadingHTTPServer((bind, port), Handler).serve_forever()
