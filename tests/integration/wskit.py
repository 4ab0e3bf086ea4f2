"""Test kit for sluice's integration tests: processes, configs, raw HTTP and our own WebSocket
client (RFC 6455) on plain sockets.

Standard library only. Everything blocks with a bounded timeout: a read that would wait longer
raises socket.timeout (TimeoutError), a process that will not stop is killed.

The client is deliberately low level: it builds frames byte by byte so tests can send what a
well-behaved library never would (a frame glued to the handshake, a message in many fragments,
a close with any code), and it checks what comes back strictly (the server never masks, the
101 carries the right Sec-WebSocket-Accept).
"""
import asyncio
import base64
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

DEFAULT_TIMEOUT = 5.0


class HarnessError(Exception):
    """The harness could not set something up (a process did not start, a port did not open)."""


class ProtocolError(Exception):
    """The peer broke HTTP or RFC 6455 in a way the test did not ask for."""


# ---------------------------------------------------------------------------------------------
# Ports, waiting, processes

def free_ports(n, host="127.0.0.1"):
    """<n> distinct free TCP ports on <host> (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host="127.0.0.1"):
    return free_ports(1, host)[0]


def wait_until(pred, timeout=DEFAULT_TIMEOUT, interval=0.02):
    """Polls <pred> until it returns a true value (returned) or <timeout> passes (returns the
    last false value)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def port_open(port, host="127.0.0.1", timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:])


class Proc:
    """A child process with stdout and stderr in files under <tmpdir>."""

    def __init__(self, name, argv, tmpdir, cwd=None, env=None, preexec_fn=None):
        self.name = name
        self.argv = list(argv)
        self.out_path = os.path.join(tmpdir, name + ".out")
        self.err_path = os.path.join(tmpdir, name + ".err")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        try:
            self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                      stderr=self._err, cwd=cwd, env=env,
                                      preexec_fn=preexec_fn)
        except OSError as e:
            self._close_files()
            raise HarnessError("cannot start %s: %s" % (" ".join(self.argv), e))
        self.pid = self.p.pid
        self.rc = None

    def _close_files(self):
        for f in (self._out, self._err):
            try:
                f.close()
            except OSError:
                pass

    def alive(self):
        return self.p.poll() is None

    def wait_port(self, port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT):
        """Waits until <host>:<port> accepts; raises HarnessError (with the output tails) if the
        process exits first or the port does not open within <timeout>."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError("%s exited with %s before listening on %s:%d\n%s"
                                   % (self.name, self.p.returncode, host, port, self.tails()))
            if port_open(port, host):
                return
            time.sleep(0.02)
        raise HarnessError("%s: %s:%d not open after %.1f s\n%s"
                           % (self.name, host, port, timeout, self.tails()))

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """The exit status, or None if still running after <timeout>."""
        try:
            self.rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._close_files()
        return self.rc

    def stop(self, timeout=DEFAULT_TIMEOUT):
        """SIGTERM, wait up to <timeout>, then SIGKILL. Returns (exit status, killed)."""
        if not self.alive():
            rc = self.wait(1)
            return rc, False
        self.signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is not None:
            return rc, False
        self.kill()
        return self.rc, True

    def kill(self):
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.wait(10)
        return self.rc

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def cpu_seconds(self):
        """User + system CPU time the process has used so far."""
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def nofile_limits(self):
        """(soft, hard) RLIMIT_NOFILE of the process, from /proc/PID/limits."""
        with open("/proc/%d/limits" % self.pid) as f:
            for line in f:
                if line.startswith("Max open files"):
                    parts = line.split()
                    return int(parts[3]), int(parts[4])
        return None

    def fds(self):
        """{fd: link target} of the process."""
        out = {}
        d = "/proc/%d/fd" % self.pid
        for fd in os.listdir(d):
            try:
                out[int(fd)] = os.readlink(os.path.join(d, fd))
            except OSError:
                pass
        return out

    def stdout_text(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr_text(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def tails(self, n=40):
        return ("--- %s (pid %d) %s\n--- stderr tail:\n%s\n--- stdout tail:\n%s"
                % (self.name, self.pid, " ".join(self.argv), tail(self.err_path, n),
                   tail(self.out_path, n)))


def raise_nofile(want=20000):
    """Raises this process's RLIMIT_NOFILE soft limit towards <want> (at most the hard limit).
    Returns the new soft limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(want, hard) if hard != resource.RLIM_INFINITY else want
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def blackhole_listener(host="127.0.0.1"):
    """A listening socket whose accept queue is full, so a new connect() to it hangs in SYN_SENT
    (Linux drops SYNs for a full queue when tcp_abort_on_overflow is 0): a loopback stand-in
    for an unreachable target. Returns (port, [sockets to keep open]) or None when the trick
    does not work here (the caller skips)."""
    lst = socket.socket()
    lst.bind((host, 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    keep = [lst]
    for _ in range(3):  # backlog 0 queues one connection; fill with a margin
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex((host, port))
        keep.append(c)
    time.sleep(0.1)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect((host, port))
        works = False
    except (socket.timeout, TimeoutError):
        works = True
    except OSError:
        works = False
    finally:
        probe.close()
    if not works:
        for s in keep:
            s.close()
        return None
    return port, keep


# ---------------------------------------------------------------------------------------------
# Config

def target(port, weight=1, ip="127.0.0.1", proxy=None, maintenance=False):
    t = {"ip": ip, "port": port, "weight": weight, "healthCheckEnabled": False}
    if proxy is not None:
        t["proxyProtocol"] = proxy
    if maintenance:
        t["maintenanceEnabled"] = True
    return t


def group(gid, targets, algorithm="ROUND_ROBIN", name=None):
    return {"id": gid, "properties": {"name": name or gid, "algorithm": algorithm,
                                      "protocol": "HTTP", "targets": list(targets)}}


def cond_header(key, value=None, condition="EQUALS", negate=False):
    c = {"type": "HEADER", "condition": condition, "key": key}
    if value is not None:
        c["value"] = value
    if negate:
        c["negate"] = True
    return c


def cond_path(value, condition="EQUALS"):
    return {"type": "PATH", "condition": condition, "value": value}


def forward(gid, conditions=(), name=None):
    return {"name": name or "fwd-" + gid, "type": "FORWARD", "targetGroup": gid,
            "conditions": list(conditions)}


def static(status, message, conditions=(), content_type="text/plain", name=None):
    return {"name": name or "static-%d" % status, "type": "STATIC", "statusCode": status,
            "responseMessage": message, "contentType": content_type,
            "conditions": list(conditions)}


def redirect(location, status=301, drop_query=False, conditions=(), name=None):
    return {"name": name or "redirect-%d" % status, "type": "REDIRECT", "location": location,
            "statusCode": status, "dropQuery": drop_query, "conditions": list(conditions)}


def config(port, rules, groups, client_timeout=50000, **local):
    """A whole sluice config: one HTTP forwarding rule on 127.0.0.1:<port> with <rules>, the
    target <groups>, and the sluice block (defaults below, overridden by <local>)."""
    sl = {"threads": 2, "headerTimeout": 10000, "connectTimeout": 5000, "tunnelTimeout": 0,
          "drainTimeout": 30000, "accessLog": "-", "admin": "off"}
    sl.update(local)
    return {
        "forwardingRules": [{"id": "fr-1", "properties": {
            "name": "fr", "protocol": "HTTP", "listenerIp": "127.0.0.1", "listenerPort": port,
            "clientTimeout": client_timeout, "httpRules": list(rules)}}],
        "targetGroups": list(groups),
        "sluice": sl,
    }


# ---------------------------------------------------------------------------------------------
# Buffered socket

def tcp_connect(port, host="127.0.0.1", src=None, timeout=DEFAULT_TIMEOUT, bufsize=None):
    """A connected TCP socket with TCP_NODELAY, from <src> when given. With <bufsize>, its
    send and receive buffers are that small (a slow client)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if bufsize:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
    if src is not None:
        s.bind((src, 0))
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


class Conn:
    """A blocking socket with a read buffer. Every read takes a timeout (default 5 s)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    @classmethod
    def connect(cls, port, host="127.0.0.1", src=None, timeout=DEFAULT_TIMEOUT):
        return cls(tcp_connect(port, host, src, timeout))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        """Closes with an RST (SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, timeout, deadline=None):
        """One recv into the buffer; returns the number of bytes read (0 at EOF)."""
        if deadline is not None:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise socket.timeout("timed out")
        self.sock.settimeout(timeout)
        data = self.sock.recv(1 << 20)
        if not data:
            self.eof = True
        self.buf += data
        return len(data)

    def read_until(self, delim, timeout=DEFAULT_TIMEOUT, limit=1 << 24):
        deadline = time.monotonic() + timeout
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            start = max(0, len(self.buf) - len(delim) + 1)
            if len(self.buf) > limit:
                raise ProtocolError("no %r within %d bytes" % (delim, limit))
            if self.eof or self._fill(None, deadline) == 0:
                raise ProtocolError("EOF before %r; got %r" % (delim, bytes(self.buf[:200])))

    def read_exact(self, n, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            if self.eof or self._fill(None, deadline) == 0:
                raise ProtocolError("EOF after %d of %d bytes" % (len(self.buf), n))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not self.eof:
            self._fill(None, deadline)
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def wait_closed(self, timeout=DEFAULT_TIMEOUT):
        """Reads (keeping the data in the buffer) until the peer closes. Returns "eof" or
        "reset", or None if the connection is still open after <timeout>."""
        deadline = time.monotonic() + timeout
        try:
            while not self.eof:
                self._fill(None, deadline)
            return "eof"
        except ConnectionResetError:
            return "reset"
        except (socket.timeout, TimeoutError):
            return None

    def still_open(self, wait=0.2):
        """True if nothing closed the connection within <wait> (data read is kept)."""
        return self.wait_closed(wait) is None


# ---------------------------------------------------------------------------------------------
# HTTP

class Response:
    def __init__(self, status, reason, version, headers, body, head_raw):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers  # [(name, value)] as received
        self.body = body
        self.head_raw = head_raw

    def header(self, name, default=None):
        """The comma-joined values of header <name> (case-insensitive), or <default>."""
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(vals) if vals else default

    def header_list(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def tokens(self, name):
        v = self.header(name, "")
        return [t.strip().lower() for t in v.split(",") if t.strip()]

    @property
    def closes(self):
        """Whether the response announces the end of the connection."""
        return "close" in self.tokens("Connection") or self.version == "HTTP/1.0"

    def __repr__(self):
        return "<Response %d %r body=%r>" % (self.status, self.headers, self.body[:200])


def request_bytes(method="GET", path="/", headers=(), body=None, host="test.local",
                  version="HTTP/1.1"):
    """A request head (and <body> if given, with a Content-Length unless <headers> has one or a
    Transfer-Encoding). <headers> is a sequence of (name, value); Host goes first unless
    <host> is None."""
    lines = ["%s %s %s" % (method, path, version)]
    if host is not None:
        lines.append("Host: %s" % host)
    names = {k.lower() for k, _ in headers}
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


def parse_head(raw):
    """(first line parts, [(name, value)]) of a head ending in CRLFCRLF."""
    text = raw.decode("latin-1")
    lines = text.split("\r\n")
    first = lines[0]
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        if ":" not in line:
            raise ProtocolError("bad header line %r" % line)
        k, v = line.split(":", 1)
        headers.append((k, v.strip(" \t")))
    return first, headers


def read_chunked(conn, timeout=DEFAULT_TIMEOUT):
    body = bytearray()
    while True:
        line = conn.read_until(b"\r\n", timeout)
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while conn.read_until(b"\r\n", timeout) != b"\r\n":
                pass  # trailers
            return bytes(body)
        body += conn.read_exact(size, timeout)
        if conn.read_exact(2, timeout) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")


def read_response(conn, method="GET", timeout=DEFAULT_TIMEOUT):
    """Reads one response from <conn> (a Conn). The body is delimited as RFC 9112 says: none for
    HEAD, 1xx, 204, 304; chunked; Content-Length; else until EOF."""
    head = conn.read_until(b"\r\n\r\n", timeout)
    first, headers = parse_head(head)
    parts = first.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ProtocolError("bad status line %r" % first)
    status = int(parts[1])
    resp = Response(status, parts[2] if len(parts) > 2 else "", parts[0], headers, b"", head)
    te = resp.tokens("Transfer-Encoding")
    cl = resp.header("Content-Length")
    if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
        pass
    elif te and te[-1] == "chunked":
        resp.body = read_chunked(conn, timeout)
    elif cl is not None:
        resp.body = conn.read_exact(int(cl), timeout)
    else:
        resp.body = conn.read_to_eof(timeout)
    return resp


def http(port, method="GET", path="/", headers=(), body=None, src=None, raw=None,
         timeout=DEFAULT_TIMEOUT, close=True):
    """One request on a new connection (Connection: close unless <close> is false or <raw>
    gives the bytes to send). Returns the Response."""
    if raw is None:
        hdrs = list(headers)
        if close:
            hdrs.append(("Connection", "close"))
        raw = request_bytes(method, path, hdrs, body)
    with Conn.connect(port, src=src, timeout=timeout) as c:
        c.send(raw)
        return read_response(c, method, timeout)


def served_by(resp):
    """The name of the sluice-bench (or Python) backend that answered <resp>: its X-Served-By
    header, else the name in a "sluice-bench NAME" body."""
    v = resp.header("X-Served-By")
    if v:
        return v.strip()
    first = resp.body.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if first.startswith("sluice-bench "):
        return first.split()[1]
    return None


# ---------------------------------------------------------------------------------------------
# WebSocket frames

def mask_bytes(key, data):
    """<data> XORed with the 4-byte <key> repeated (fast for large payloads)."""
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, key=None):
    """One frame. <rsv> is the 3 RSV bits as an int (4 = RSV1)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = key or os.urandom(4)
        return head + key + mask_bytes(key, payload)
    return head + payload


def close_payload(code=None, reason=""):
    if code is None:
        return b""
    return struct.pack("!H", code) + reason.encode("utf-8")


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload")

    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode, self.masked, self.payload = fin, rsv, opcode, masked, \
            payload

    def close_code(self):
        """(code, reason) of a close frame; (None, "") when it has no body."""
        if len(self.payload) < 2:
            return None, ""
        return struct.unpack("!H", self.payload[:2])[0], self.payload[2:].decode("utf-8")

    def __repr__(self):
        return "<Frame op=%d fin=%d rsv=%d len=%d %r>" % (
            self.opcode, self.fin, self.rsv, len(self.payload), bytes(self.payload[:40]))


class FrameParser:
    """Incremental frame parser: feed() bytes, take complete frames from frames()."""

    def __init__(self, expect_masked=False, max_size=1 << 26):
        self.buf = bytearray()
        self.expect_masked = expect_masked
        self.max_size = max_size

    def feed(self, data):
        self.buf += data

    def next(self):
        """The next complete frame, or None."""
        b = self.buf
        if len(b) < 2:
            return None
        b0, b1 = b[0], b[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = struct.unpack_from("!H", b, 2)[0]
            pos = 4
        elif n == 127:
            if len(b) < 10:
                return None
            n = struct.unpack_from("!Q", b, 2)[0]
            pos = 10
        if n > self.max_size:
            raise ProtocolError("frame of %d bytes" % n)
        masked = bool(b1 & 0x80)
        if masked != self.expect_masked:
            raise ProtocolError("frame %s a mask" % ("has" if masked else "lacks"))
        if masked:
            if len(b) < pos + 4:
                return None
            key = bytes(b[pos:pos + 4])
            pos += 4
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos:pos + n])
        del b[:pos + n]
        if masked:
            payload = mask_bytes(key, payload)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, masked, payload)

    def frames(self):
        out = []
        while True:
            f = self.next()
            if f is None:
                return out
            out.append(f)


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def handshake_bytes(key, path="/", host="test.local", protocols=(), extensions=(), headers=(),
                    connection="Upgrade", upgrade="websocket", version="13", origin=None):
    hdrs = [("Upgrade", upgrade), ("Connection", connection), ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", version)]
    if origin:
        hdrs.append(("Origin", origin))
    if protocols:
        hdrs.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
    for e in extensions:
        hdrs.append(("Sec-WebSocket-Extensions", e))
    hdrs.extend(headers)
    return request_bytes("GET", path, hdrs, host=host)


class WSClient:
    """A WebSocket client on a Conn. Use WSClient.open(port, ...) for a new connection, or
    WSClient(conn) then handshake() on one that already carried plain requests."""

    def __init__(self, conn):
        self.conn = conn
        self.parser = FrameParser(expect_masked=False)
        self.response = None

    @classmethod
    def open(cls, port, path="/", src=None, timeout=DEFAULT_TIMEOUT, **kw):
        return cls.over(Conn.connect(port, src=src, timeout=timeout), path, timeout, **kw)

    @classmethod
    def over(cls, conn, path="/", timeout=DEFAULT_TIMEOUT, **kw):
        """A client on <conn> (plain or TLS) once the upgrade is sent and its 101 checked;
        <conn> is closed if that fails."""
        c = cls(conn)
        try:
            c.handshake(path, timeout=timeout, **kw)
        except BaseException:
            c.close()
            raise
        return c

    def handshake(self, path="/", expect=101, extra=b"", timeout=DEFAULT_TIMEOUT, **kw):
        """Sends the upgrade request (followed by <extra> bytes in the same write) and reads the
        response. With expect=101 checks the 101 strictly; otherwise checks the status is
        <expect> (None: anything). Returns the Response; bytes after the 101 stay buffered as
        frames."""
        key = ws_key()
        self.conn.send(handshake_bytes(key, path, **kw) + extra)
        if expect == 101:
            head = self.conn.read_until(b"\r\n\r\n", timeout)
            first, headers = parse_head(head)
            parts = first.split(" ", 2)
            resp = Response(int(parts[1]), parts[2] if len(parts) > 2 else "", parts[0],
                            headers, b"", head)
            self.response = resp
            if resp.status != 101:
                try:  # read the body for the error message
                    resp.body = self._body_after_head(resp, timeout=1)
                except Exception:
                    pass
                raise ProtocolError("expected 101, got %d %r" % (resp.status, resp.body[:300]))
            if resp.header("Upgrade", "").lower() != "websocket":
                raise ProtocolError("101 without Upgrade: websocket: %r" % head)
            if "upgrade" not in resp.tokens("Connection"):
                raise ProtocolError("101 without Connection: upgrade: %r" % head)
            if resp.header("Sec-WebSocket-Accept") != ws_accept(key):
                raise ProtocolError("bad Sec-WebSocket-Accept: %r" % head)
            self.parser.feed(bytes(self.conn.buf))
            self.conn.buf.clear()
            return resp
        resp = read_response(self.conn, "GET", timeout)
        self.response = resp
        if expect is not None and resp.status != expect:
            raise ProtocolError("expected %d, got %d" % (expect, resp.status))
        return resp

    def _body_after_head(self, resp, timeout):
        cl = resp.header("Content-Length")
        if cl is not None:
            return self.conn.read_exact(int(cl), timeout)
        if resp.tokens("Transfer-Encoding")[-1:] == ["chunked"]:
            return read_chunked(self.conn, timeout)
        return b""

    # sending

    def send_raw(self, data):
        self.conn.send(data)

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0):
        self.conn.send(encode_frame(opcode, payload, fin=fin, rsv=rsv))

    def send_message(self, opcode, payload, fragments=1):
        """One message, split into <fragments> frames (continuations after the first)."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if fragments <= 1:
            self.send_frame(opcode, payload)
            return
        step = max(1, -(-len(payload) // fragments))
        parts = [payload[i:i + step] for i in range(0, len(payload), step)] or [b""]
        while len(parts) < fragments:
            parts.append(b"")
        data = bytearray()
        for i, p in enumerate(parts):
            data += encode_frame(opcode if i == 0 else OP_CONT, p, fin=i == len(parts) - 1)
        self.conn.send(bytes(data))

    def send_text(self, text, fragments=1):
        self.send_message(OP_TEXT, text.encode("utf-8") if isinstance(text, str) else text,
                          fragments)

    def send_binary(self, data, fragments=1):
        self.send_message(OP_BINARY, data, fragments)

    def ping(self, payload=b""):
        self.send_frame(OP_PING, payload)

    def send_close(self, code=1000, reason=""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    # receiving

    def recv_frame(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            f = self.parser.next()
            if f is not None:
                return f
            if self.conn.eof:
                raise ProtocolError("connection closed while waiting for a frame")
            self.conn.buf.clear()
            if self.conn._fill(None, deadline) == 0:
                raise ProtocolError("connection closed while waiting for a frame")
            self.parser.feed(bytes(self.conn.buf))
            self.conn.buf.clear()

    def recv_message(self, timeout=DEFAULT_TIMEOUT, auto_pong=True):
        """(opcode, payload) of the next data message, reassembled from fragments; answers
        pings on the way. A close frame is returned as (OP_CLOSE, payload)."""
        deadline = time.monotonic() + timeout
        opcode, data = None, bytearray()
        while True:
            f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if f.opcode == OP_PING:
                if auto_pong:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode == OP_CLOSE:
                return OP_CLOSE, f.payload
            if f.opcode == OP_CONT:
                if opcode is None:
                    raise ProtocolError("continuation without a message")
            else:
                if opcode is not None:
                    raise ProtocolError("new message inside a fragmented one")
                opcode = f.opcode
            data += f.payload
            if f.fin:
                return opcode, bytes(data)

    def recv_close(self, timeout=DEFAULT_TIMEOUT):
        """Skips data messages until a close frame; returns its (code, reason)."""
        deadline = time.monotonic() + timeout
        while True:
            op, payload = self.recv_message(max(0.001, deadline - time.monotonic()))
            if op == OP_CLOSE:
                return Frame(True, 0, OP_CLOSE, False, payload).close_code()

    def echo(self, opcode, payload, fragments=1, timeout=DEFAULT_TIMEOUT):
        """Sends one message and returns the next message received. Sends from a thread when the
        message is large, so an echo coming back early cannot deadlock the two directions."""
        if len(payload) < 1 << 18:
            self.send_message(opcode, payload, fragments)
            return self.recv_message(timeout)
        import threading
        err = []

        def sender():
            try:
                self.send_message(opcode, payload, fragments)
            except Exception as e:  # reported below
                err.append(e)
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        try:
            return self.recv_message(timeout)
        finally:
            t.join(timeout)
            if err:
                raise err[0]

    def wait_closed(self, timeout=DEFAULT_TIMEOUT):
        return self.conn.wait_closed(timeout)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------
# asyncio WebSocket client for many concurrent tunnels

class AioWS:
    """A minimal asyncio WebSocket client: handshake, send a message, receive a message."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.parser = FrameParser(expect_masked=False)

    @classmethod
    async def open(cls, port, path="/", host="127.0.0.1"):
        reader, writer = await asyncio.open_connection(host, port)
        self = cls(reader, writer)
        key = ws_key()
        writer.write(handshake_bytes(key, path))
        head = await reader.readuntil(b"\r\n\r\n")
        first, headers = parse_head(head)
        status = int(first.split(" ", 2)[1])
        if status != 101:
            writer.close()
            raise ProtocolError("expected 101, got %r" % first)
        accept = [v for k, v in headers if k.lower() == "sec-websocket-accept"]
        if accept != [ws_accept(key)]:
            writer.close()
            raise ProtocolError("bad accept %r" % head)
        return self

    async def send(self, opcode, payload):
        self.writer.write(encode_frame(opcode, payload))
        await self.writer.drain()

    async def recv(self):
        while True:
            f = self.parser.next()
            if f is not None:
                if f.opcode in (OP_PING, OP_PONG):
                    continue
                return f
            data = await self.reader.read(65536)
            if not data:
                raise ProtocolError("EOF while waiting for a frame")
            self.parser.feed(data)

    async def close(self, code=1000):
        try:
            self.writer.write(encode_frame(OP_CLOSE, close_payload(code)))
            await self.writer.drain()
            f = await self.recv()
            if f.opcode != OP_CLOSE:
                raise ProtocolError("expected close, got %r" % f)
        finally:
            self.writer.close()


# ---------------------------------------------------------------------------------------------
# Access log

def read_json_lines(text):
    """([parsed objects], [lines that are not JSON objects]) of <text>."""
    good, bad = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            v = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        (good if isinstance(v, dict) else bad).append(v if isinstance(v, dict) else line)
    return good, bad


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()
