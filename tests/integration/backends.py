"""Backends (targets) for sluice's integration tests.

PyBackend: a threaded HTTP/1.1 + WebSocket server in Python that records every byte it
receives, per connection, and behaves according to the request path:

    any plain request        200, body "NAME METHOD PATH\\n", header X-Served-By: NAME
    /slow...                 the same after 0.3 s
    /big?n=N                 200 with a Content-Length body of N bytes
    /chunked?n=N             200 with a chunked body of N bytes (in chunks of 1000)
    /close                   200 delimited by the close of the connection (no length)
    /204, /304               204 No Content, 304 Not Modified
    HEAD ...                 200 with Content-Length: 1234 and no body
    /echo-body               200 whose body is the request body
    upgrade /ws/echo (or any /ws path not below)
                             101, then echoes messages (ping -> pong, close -> close with the
                             same code; text "close CODE REASON" -> server-initiated close)
    upgrade /ws/hello        101 and a text frame "hello from NAME" in the same send(), then echo
    upgrade /ws/hello-split  the same, the frame in a second send() (Nagle holds it until the
                             101 is ACKed: the sockets here keep Nagle on)
    upgrade /ws/403          403 Forbidden with body "forbidden by NAME\\n"
    upgrade /ws/ext          101 echoing the offered Sec-WebSocket-Protocol (first) and
                             Sec-WebSocket-Extensions (as offered), then echo
    upgrade /ws/halfclose    101, then reads raw bytes until EOF, then sends back
                             "got N bytes" and closes
    upgrade /ws/reset        101, then on the first byte received closes with an RST
    upgrade /ws/finfirst     101, then once the test sets conn.go: sends "bye" and its FIN
                             ("fin-sent"), and reads raw bytes until EOF ("eof"); with ?oob
                             it sends "AAAA", one urgent byte "!" (MSG_OOB), then "BBBB"

A connection that starts with a PROXY protocol v1 line or v2 block has it parsed and stored
(conn.proxy) before the HTTP request is read.

WebsocketsServer: python3-websockets' own server (asyncio, in a thread), an implementation we
did not write: echoes, negotiates subprotocols and permessage-deflate.

BenchServer: a `sluice-bench server` process.
"""
import asyncio
import socket
import struct
import threading
import time
from urllib.parse import parse_qs, urlsplit

import wskit
from wskit import (OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, FrameParser,
                   encode_frame, ws_accept)

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


class Request:
    def __init__(self, method, target, version, headers, body, head_raw):
        self.method, self.target, self.version = method, target, version
        self.headers = headers  # [(name, value)]
        self.body = body        # decoded (de-chunked)
        self.head_raw = head_raw

    @property
    def path(self):
        return urlsplit(self.target).path

    def header(self, name, default=None):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(vals) if vals else default

    def header_list(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def tokens(self, name):
        return [t.strip().lower() for t in self.header(name, "").split(",") if t.strip()]

    def __repr__(self):
        return "<Request %s %s %r>" % (self.method, self.target, self.headers)


class BackendConn:
    """What one accepted connection carried."""

    def __init__(self, sock, peer):
        self.sock = sock
        self.peer = peer
        self.raw = bytearray()    # every byte received, in order
        self.proxy = None         # the PROXY header bytes, if any
        self.requests = []        # Request objects, in order
        self.events = []          # free-form notes ("ws-open", "eof", ...)
        self.go = threading.Event()  # /ws/finfirst: the test's signal to send and shut
        self.closed = threading.Event()


class _Reader:
    """Buffered reads on a backend socket that record every byte into conn.raw."""

    def __init__(self, conn):
        self.conn = conn
        self.buf = bytearray()
        self.eof = False

    def fill(self):
        try:
            data = self.conn.sock.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.conn.raw += data
        self.buf += data
        return True

    def until(self, delim, limit=1 << 20):
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit or not self.fill():
                return None

    def exact(self, n):
        while len(self.buf) < n:
            if not self.fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def peek(self, n):
        while len(self.buf) < n:
            if not self.fill():
                return bytes(self.buf)
        return bytes(self.buf[:n])


class PyBackend:
    """Threaded recording backend; see the module docstring. Start with start(), stop with
    stop(). conns lists BackendConn objects in accept order."""

    def __init__(self, name="py", host="127.0.0.1", port=0):
        self.name = name
        self.lst = socket.socket()
        self.lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lst.bind((host, port))
        self.lst.listen(1024)
        self.port = self.lst.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping = True
        try:
            self.lst.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lst.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(2)

    # inspection

    def all_raw(self):
        with self.lock:
            return b"".join(bytes(c.raw) for c in self.conns)

    def requests(self):
        with self.lock:
            return [r for c in self.conns for r in c.requests]

    def wait_requests(self, n, timeout=5.0):
        """The recorded requests once there are at least <n> (or whatever arrived by then)."""
        wskit.wait_until(lambda: len(self.requests()) >= n, timeout)
        return self.requests()

    # serving

    def _accept_loop(self):
        while not self.stopping:
            try:
                s, peer = self.lst.accept()
            except OSError:
                return
            c = BackendConn(s, peer)
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self._serve_conn(c)
        except OSError:
            pass
        finally:
            c.closed.set()
            try:
                c.sock.close()
            except OSError:
                pass

    def _read_proxy(self, r, c):
        head = r.peek(16)
        if head.startswith(b"PROXY "):
            c.proxy = r.until(b"\r\n", 200)
        elif head.startswith(PP2_SIG) and len(head) >= 16:
            n = struct.unpack("!H", head[14:16])[0]
            c.proxy = r.exact(16 + n)

    def _read_request(self, r):
        head = r.until(b"\r\n\r\n")
        if head is None:
            return None
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        method, target, version = (lines[0].split(" ", 2) + ["", ""])[:3]
        headers = []
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers.append((k, v.strip(" \t")))
        req = Request(method, target, version, headers, b"", head)
        te = req.tokens("Transfer-Encoding")
        if te and te[-1] == "chunked":
            body = bytearray()
            while True:
                line = r.until(b"\r\n")
                if line is None:
                    return None
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        t = r.until(b"\r\n")
                        if t is None or t == b"\r\n":
                            break
                    break
                chunk = r.exact(size)
                if chunk is None or r.exact(2) is None:
                    return None
                body += chunk
            req.body = bytes(body)
        elif req.header("Content-Length"):
            body = r.exact(int(req.header("Content-Length")))
            if body is None:
                return None
            req.body = body
        return req

    def _send(self, c, status, reason, headers=(), body=b"", length=True):
        lines = ["HTTP/1.1 %d %s" % (status, reason), "X-Served-By: %s" % self.name]
        lines += ["%s: %s" % kv for kv in headers]
        if length:
            lines.append("Content-Length: %d" % len(body))
        c.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _serve_conn(self, c):
        r = _Reader(c)
        self._read_proxy(r, c)
        while True:
            req = self._read_request(r)
            if req is None:
                c.events.append("eof")
                return
            c.requests.append(req)
            u = urlsplit(req.target)
            q = parse_qs(u.query)
            n = int(q.get("n", ["0"])[0])
            upgrade = "upgrade" in req.tokens("Connection") and \
                "websocket" in req.tokens("Upgrade")
            if upgrade:
                self._websocket(c, r, req, u.path)
                return
            if u.path.startswith("/slow"):
                time.sleep(0.3)
            if req.method == "HEAD":
                c.sock.sendall(("HTTP/1.1 200 OK\r\nX-Served-By: %s\r\nContent-Length: 1234\r\n"
                                "\r\n" % self.name).encode())
            elif u.path == "/big":
                self._send(c, 200, "OK", body=pattern(n))
            elif u.path == "/chunked":
                body = pattern(n)
                out = bytearray(("HTTP/1.1 200 OK\r\nX-Served-By: %s\r\nTransfer-Encoding: chunked"
                                 "\r\n\r\n" % self.name).encode())
                for i in range(0, n, 1000):
                    part = body[i:i + 1000]
                    out += b"%x\r\n%s\r\n" % (len(part), part)
                out += b"0\r\n\r\n"
                c.sock.sendall(bytes(out))
            elif u.path == "/close":
                c.sock.sendall(("HTTP/1.1 200 OK\r\nX-Served-By: %s\r\nConnection: close\r\n\r\n"
                                "closing body from %s\n" % (self.name, self.name)).encode())
                c.sock.shutdown(socket.SHUT_WR)
                return
            elif u.path == "/204":
                c.sock.sendall(b"HTTP/1.1 204 No Content\r\nX-Served-By: %s\r\n\r\n"
                               % self.name.encode())
            elif u.path == "/304":
                c.sock.sendall(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n"
                               b"X-Served-By: %s\r\n\r\n" % self.name.encode())
            elif u.path == "/echo-body":
                self._send(c, 200, "OK", body=req.body)
            else:
                self._send(c, 200, "OK", body=("%s %s %s\n" % (self.name, req.method,
                                                               req.target)).encode())
            if "close" in req.tokens("Connection"):
                c.sock.shutdown(socket.SHUT_WR)
                return

    def _websocket(self, c, r, req, path):
        key = req.header("Sec-WebSocket-Key", "")
        if path == "/ws/403":
            self._send(c, 403, "Forbidden", [("Content-Type", "text/plain")],
                       ("forbidden by %s\n" % self.name).encode())
            # stay a keep-alive HTTP connection: the caller loops for another request
            c.events.append("403")
            return self._serve_rest(c, r)
        extra = []
        if path == "/ws/ext":
            protos = req.tokens("Sec-WebSocket-Protocol")
            if protos:
                extra.append(("Sec-WebSocket-Protocol", req.header("Sec-WebSocket-Protocol")
                              .split(",")[0].strip()))
            for e in req.header_list("Sec-WebSocket-Extensions"):
                extra.append(("Sec-WebSocket-Extensions", e))
        head = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket",
                "Connection: Upgrade", "Sec-WebSocket-Accept: %s" % ws_accept(key),
                "X-Served-By: %s" % self.name]
        head += ["%s: %s" % kv for kv in extra]
        out = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        hello = encode_frame(OP_TEXT, "hello from %s" % self.name, mask=False)
        if path == "/ws/hello":
            out += hello
        c.sock.sendall(out)
        if path == "/ws/hello-split":
            c.sock.sendall(hello)
        c.events.append("ws-open")
        if path == "/ws/finfirst":
            c.go.wait(30)
            if "oob" in req.target:
                c.sock.sendall(b"AAAA")
                c.sock.send(b"!", socket.MSG_OOB)
                c.sock.sendall(b"BBBB")
            else:
                c.sock.sendall(b"bye")
            c.sock.shutdown(socket.SHUT_WR)
            c.events.append("fin-sent")
            while r.fill():
                pass
            c.events.append("eof")
            return
        if path == "/ws/halfclose":
            while r.fill():
                pass
            c.events.append("eof")
            c.sock.sendall(b"got %d bytes" % len(r.buf))
            c.sock.shutdown(socket.SHUT_WR)
            c.events.append("sent")
            return
        if path == "/ws/reset":
            if not r.buf:
                r.fill()
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.events.append("reset")
            c.sock.close()
            return
        self._ws_echo(c, r)

    def _serve_rest(self, c, r):
        # After a non-101 answer to an upgrade: keep serving plain requests on the connection.
        while True:
            req = self._read_request(r)
            if req is None:
                return
            c.requests.append(req)
            self._send(c, 200, "OK", body=("%s %s %s\n" % (self.name, req.method,
                                                           req.target)).encode())

    def _ws_echo(self, c, r):
        p = FrameParser(expect_masked=True)
        p.feed(bytes(r.buf))
        r.buf.clear()
        msg_op, msg = None, bytearray()
        sent_close = False
        while True:
            f = p.next()
            if f is None:
                if not r.fill():
                    c.events.append("eof")
                    return
                p.feed(bytes(r.buf))
                r.buf.clear()
                continue
            if f.opcode == OP_PING:
                c.sock.sendall(encode_frame(OP_PONG, f.payload, mask=False))
            elif f.opcode == OP_PONG:
                pass
            elif f.opcode == OP_CLOSE:
                c.events.append("close %r" % (f.close_code(),))
                if not sent_close:
                    c.sock.sendall(encode_frame(OP_CLOSE, f.payload[:125], mask=False))
                c.sock.shutdown(socket.SHUT_WR)
                while r.fill():
                    pass
                return
            else:
                if f.opcode != OP_CONT:
                    msg_op, msg = f.opcode, bytearray()
                msg += f.payload
                if f.fin:
                    if msg_op == OP_TEXT and msg.startswith(b"close "):
                        parts = msg.decode().split(" ", 2)
                        code = int(parts[1])
                        reason = parts[2] if len(parts) > 2 else ""
                        c.sock.sendall(encode_frame(OP_CLOSE, wskit.close_payload(code, reason),
                                                    mask=False))
                        c.events.append("server-close %d" % code)
                        sent_close = True
                        # wait for the client's close, then end
                        continue
                    c.sock.sendall(encode_frame(msg_op, bytes(msg), mask=False))


def pattern(n):
    """<n> bytes of printable, position-dependent data."""
    unit = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"
    return (unit * (n // len(unit) + 1))[:n]


class WebsocketsServer:
    """python3-websockets' server in an asyncio loop in a thread. Echoes every message; a text
    message "close CODE REASON" makes it close with that code. Negotiates the first of
    <subprotocols> the client offers, and permessage-deflate when <compression> is "deflate"."""

    def __init__(self, subprotocols=None, compression="deflate", host="127.0.0.1",
                 process_request=None):
        import websockets  # Debian's python3-websockets 10.4
        self._websockets = websockets
        self.process_request = process_request  # websockets' hook: answer plain HTTP itself
        self.host = host
        self.subprotocols = subprotocols
        self.compression = compression
        self.port = None
        self.seen = []  # (path, subprotocol, request extensions header) per connection
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _handler(self, ws, path=None):
        self.seen.append((ws.path, ws.subprotocol,
                          ws.request_headers.get("Sec-WebSocket-Extensions")))
        try:
            async for msg in ws:
                if isinstance(msg, str) and msg.startswith("close "):
                    parts = msg.split(" ", 2)
                    await ws.close(int(parts[1]), parts[2] if len(parts) > 2 else "")
                    return
                await ws.send(msg)
        except self._websockets.ConnectionClosed:
            pass

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def main():
            self._stop = asyncio.Event()
            async with self._websockets.serve(self._handler, self.host, 0,
                                              subprotocols=self.subprotocols,
                                              compression=self.compression,
                                              process_request=self.process_request,
                                              max_size=None) as server:
                self.port = server.sockets[0].getsockname()[1]
                self._ready.set()
                await self._stop.wait()
        try:
            self.loop.run_until_complete(main())
        finally:
            self._ready.set()

    def start(self):
        self.thread.start()
        if not self._ready.wait(5) or self.port is None:
            raise wskit.HarnessError("python3-websockets server did not start")
        return self

    def stop(self):
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(5)


class BenchServer:
    """`sluice-bench server --listen 127.0.0.1:PORT --name NAME` as a process."""

    def __init__(self, exe, tmpdir, name="bench", port=None):
        self.name = name
        self.port = port or wskit.free_port()
        self.proc = wskit.Proc("bench-" + name, [exe, "server", "--listen",
                                                 "127.0.0.1:%d" % self.port, "--name", name],
                               tmpdir)

    def start(self, timeout=5.0):
        self.proc.wait_port(self.port, timeout=timeout)
        return self

    def stop(self):
        return self.proc.stop()
