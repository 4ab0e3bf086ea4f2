"""TLS test kit for sluice's integration tests: certificates made at test time with the
`openssl` command line, TLS clients on Python's ssl module (an implementation we did not
write) and `openssl s_client`, and a parser of PROXY protocol v2 TLVs.

Standard library plus the `openssl` program. Every subprocess has a timeout.

PKI(dir) makes a test CA (ECDSA P-256: fast) with a minimal `openssl ca` setup, so that leaf
certificates can have any dates (an expired one, one expiring in 3 days), a serial of their
own, SANs with wildcards, and an OCSP response from the CA's index.
"""
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import warnings

import wskit

OPENSSL = shutil.which("openssl")
TIMEOUT = 5.0

CA_CNF = """\
[ ca ]
default_ca = tca
[ tca ]
dir = .
database = index.txt
new_certs_dir = newcerts
serial = serial
default_md = sha256
policy = pany
copy_extensions = copy
unique_subject = no
email_in_dn = no
[ pany ]
commonName = supplied
[ leaf ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
[ ica ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class OpensslError(Exception):
    pass


def openssl(args, cwd, input=None, timeout=30, check=True):
    """Runs `openssl ARGS` in <cwd>; returns the CompletedProcess (text output)."""
    p = subprocess.run([OPENSSL, *args], cwd=cwd, input=input, capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise OpensslError("openssl %s: exit %d\n%s%s" % (" ".join(args), p.returncode,
                                                          p.stdout, p.stderr))
    return p


class PKI:
    """A test CA in <dir> and the files it makes there (paths returned are absolute)."""

    def __init__(self, dir, issuer=None, cn="sluice test CA"):
        """A CA in <dir>: self-signed, or an intermediate signed by PKI <issuer>."""
        self.dir = dir
        os.makedirs(os.path.join(dir, "newcerts"), exist_ok=True)
        with open(os.path.join(dir, "ca.cnf"), "w") as f:
            f.write(CA_CNF)
        open(os.path.join(dir, "index.txt"), "w").close()
        with open(os.path.join(dir, "serial"), "w") as f:
            f.write("2000\n" if issuer else "1000\n")
        self.ca_key = self.path("ca.key")
        self.ca = self.path("ca.pem")
        if issuer is None:
            openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "60",
                     "-subj", "/CN=" + cn,
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                     "-addext", "subjectKeyIdentifier=hash"], dir)
        else:
            openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-nodes", "-keyout", "ca.key", "-out", "ca.csr", "-subj", "/CN=" + cn],
                    dir)
            openssl(["ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile",
                     "ca.key", "-in", os.path.join(dir, "ca.csr"), "-out", self.ca,
                     "-extensions", "ica", "-days", "50", "-notext"], issuer.dir)

    def path(self, name):
        return os.path.join(self.dir, name)

    def key(self, name, kind="ec"):
        """A new unencrypted PEM private key <name>.key."""
        out = self.path(name + ".key")
        if kind == "rsa":
            openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                     "-out", out], self.dir)
        else:
            openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-out", out], self.dir)
        return out

    def leaf(self, name, cn, sans=(), days=30, start=None, end=None, key=None):
        """A certificate <name>.pem for <cn> (SAN DNS names <sans>) signed by the CA, on <key>
        (a new one <name>.key if None). <start>/<end> (YYYYMMDDHHMMSSZ) override <days>.
        Returns (cert path, key path)."""
        key = key or self.key(name)
        csr = self.path(name + ".csr")
        args = ["req", "-new", "-key", key, "-out", csr, "-subj", "/CN=" + cn]
        if sans:
            args += ["-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans)]
        openssl(args, self.dir)
        out = self.path(name + ".pem")
        args = ["ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
                "-in", csr, "-out", out, "-extensions", "leaf", "-notext"]
        if start or end:
            args += ["-startdate", start or "20200101000000Z", "-enddate", end]
        else:
            args += ["-days", str(days)]
        openssl(args, self.dir)
        return out, key

    def self_signed(self, name, cn, sans=(), days=30):
        key = self.key(name)
        out = self.path(name + ".pem")
        args = ["req", "-x509", "-key", key, "-out", out, "-days", str(days), "-subj", "/CN=" + cn]
        if sans:
            args += ["-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans)]
        openssl(args, self.dir)
        return out, key

    def encrypted_key(self, name, traditional=False):
        """An EC key encrypted with the passphrase "x": PKCS#8 ("BEGIN ENCRYPTED PRIVATE KEY")
        or the traditional form ("Proc-Type: 4,ENCRYPTED")."""
        plain = self.key(name + "-plain")
        out = self.path(name + ".key")
        args = ["pkey", "-in", plain, "-aes256", "-passout", "pass:x", "-out", out]
        if traditional:
            args.append("-traditional")
        openssl(args, self.dir)
        return out

    def ocsp(self, cert, name=None):
        """A DER OCSP response of the CA for <cert> ("good", valid one day)."""
        name = name or os.path.basename(cert) + ".resp"
        req = self.path(name + ".req")
        out = self.path(name + ".der")
        openssl(["ocsp", "-issuer", "ca.pem", "-cert", cert, "-reqout", req, "-no_nonce"],
                self.dir)
        openssl(["ocsp", "-index", "index.txt", "-rsigner", "ca.pem", "-rkey", "ca.key",
                 "-CA", "ca.pem", "-reqin", req, "-respout", out, "-ndays", "1"], self.dir)
        return out


def serial(cert):
    """The serial number of PEM certificate file <cert>, as an int."""
    out = openssl(["x509", "-in", cert, "-noout", "-serial"], os.path.dirname(cert)).stdout
    return int(out.strip().split("=", 1)[1], 16)


def der(cert):
    """The DER bytes of (the first certificate in) PEM file <cert>."""
    with open(cert) as f:
        text = f.read()
    end = text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    return ssl.PEM_cert_to_DER_cert(text[text.index("-----BEGIN CERTIFICATE-----"):end])


def der_serial(data):
    """The serial number of a DER certificate (read with the openssl program)."""
    p = subprocess.run([OPENSSL, "x509", "-inform", "DER", "-noout", "-serial"], input=data,
                       capture_output=True, timeout=30)
    return int(p.stdout.decode().strip().split("=", 1)[1], 16)


# ---------------------------------------------------------------------------------------------
# Clients

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3,
            "1.1": ssl.TLSVersion.TLSv1_1, "1.0": ssl.TLSVersion.TLSv1}


def client_ctx(cafile=None, version=None, alpn=("http/1.1",)):
    """A client context: verifies against <cafile> (chain and dates; the host name is checked
    by the tests themselves, since they also connect with names no certificate has), pinned to
    TLS <version> ("1.2", "1.3"; older ones lower the security level so that the ClientHello
    is really sent), offering <alpn> (None or () for no ALPN)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if cafile:
        ctx.load_verify_locations(cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if version:
        v = VERSIONS[version]
        if version in ("1.0", "1.1"):
            ctx.set_ciphers("DEFAULT@SECLEVEL=0")
        with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = v
            ctx.maximum_version = v
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def connect(port, ctx, sni=None, session=None, timeout=TIMEOUT, host="127.0.0.1",
            bufsize=None):
    """A TLS connection to <host>:<port>, handshake done; sends SNI <sni> when given. With
    <bufsize>, the socket's send and receive buffers are that small (a slow client)."""
    raw = wskit.tcp_connect(port, host, timeout=timeout, bufsize=bufsize)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni, session=session)
    except BaseException:
        raw.close()
        raise


def conn(port, ctx, sni=None, session=None, timeout=TIMEOUT, bufsize=None):
    """wskit.Conn on a TLS connection (for wskit's HTTP and WebSocket helpers)."""
    return wskit.Conn(connect(port, ctx, sni, session, timeout, bufsize=bufsize))


def ws_open(port, ctx, path="/", sni=None, timeout=TIMEOUT, bufsize=None, **kw):
    """wskit.WSClient over TLS: the upgrade is sent and the 101 checked."""
    return wskit.WSClient.over(conn(port, ctx, sni, timeout=timeout, bufsize=bufsize), path,
                               timeout, **kw)


def https(port, ctx, method="GET", path="/", headers=(), body=None, sni=None, session=None,
          timeout=TIMEOUT):
    """One request (Connection: close) on a new TLS connection: (Response, info) where info
    has the connection's version, cipher, alpn, reused (a resumed session), session (taken
    after the response: TLS 1.3 tickets come after the handshake) and der (the peer's
    certificate)."""
    c = conn(port, ctx, sni, session, timeout)
    try:
        c.send(wskit.request_bytes(method, path, list(headers) + [("Connection", "close")],
                                   body))
        resp = wskit.read_response(c, method, timeout)
        s = c.sock
        info = {"version": s.version(), "cipher": s.cipher(), "alpn": s.selected_alpn_protocol(),
                "reused": s.session_reused, "session": s.session,
                "der": s.getpeercert(binary_form=True)}
        return resp, info
    finally:
        c.close()


class BioTLS:
    """A TLS client on memory BIOs over a plain socket, so that a test decides how the TLS
    records go on the wire: records(...) makes one record per chunk without sending, and
    send_raw() writes any bytes in one write."""

    def __init__(self, port, ctx, sni=None, timeout=TIMEOUT, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=sni)
        self.timeout = timeout
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)
                if not data:
                    raise wskit.ProtocolError("EOF during the handshake")
                self.inc.write(data)
        self._flush()

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def records(self, chunks):
        """The bytes of one TLS record per chunk of <chunks> (not sent)."""
        for c in chunks:
            self.obj.write(c)
        return self.out.read()

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self, timeout=None):
        """Decrypted bytes (at least one), b"" at the end."""
        self.sock.settimeout(timeout or self.timeout)
        while True:
            try:
                data = self.obj.read(1 << 20)
                self._flush()  # a key update or alert to answer
                return data
            except ssl.SSLWantReadError:
                raw = self.sock.recv(1 << 20)
                if not raw:
                    self.inc.write_eof()
                    try:
                        return self.obj.read(1 << 20)
                    except (ssl.SSLWantReadError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
                        return b""
                self.inc.write(raw)
            except ssl.SSLZeroReturnError:
                return b""

    def conn(self):
        """A wskit.Conn reading through this TLS client (sending goes through send_raw)."""
        outer = self

        class _Sock:
            def settimeout(self, t):
                outer.timeout = t

            def recv(self, n):
                return outer.recv()

            def sendall(self, data):
                outer.send_raw(outer.records([data]))

            def close(self):
                outer.close()
        return wskit.Conn(_Sock())

    def close(self):
        self.sock.close()


def client_hello(sni="a.test"):
    """The bytes of a real TLS ClientHello (Python's), for sending only part of one."""
    ctx = client_ctx()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def s_client(port, args=(), input=b"", timeout=15, host="127.0.0.1"):
    """`openssl s_client -connect HOST:PORT ARGS` with <input> on stdin: (exit status,
    stdout + stderr as text)."""
    p = subprocess.run([OPENSSL, "s_client", "-connect", "%s:%d" % (host, port), *args],
                       input=input, capture_output=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# PROXY protocol v2

PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_SSL = 0x01, 0x02, 0x20
PP2_SUBTYPE_SSL_VERSION, PP2_SUBTYPE_SSL_CIPHER = 0x21, 0x23


def parse_tlvs(data):
    """[(type, value)] of a TLV sequence that must end exactly at the end of <data>."""
    out, i = [], 0
    while i < len(data):
        if len(data) - i < 3:
            raise ValueError("%d stray bytes at the end of the TLVs: %r" % (len(data) - i,
                                                                          data[i:]))
        t, n = data[i], struct.unpack("!H", data[i + 1:i + 3])[0]
        if i + 3 + n > len(data):
            raise ValueError("TLV 0x%02x of %d bytes overruns the header (%d left)"
                             % (t, n, len(data) - i - 3))
        out.append((t, bytes(data[i + 3:i + 3 + n])))
        i += 3 + n
    return out


def parse_pp2(header):
    """A whole PROXY v2 header (as the backend read it: 16 bytes plus its length field) ->
    dict(cmd, fam, src, dst, sport, dport, tlvs=[(type, value)])."""
    if header[:12] != b"\r\n\r\n\x00\r\nQUIT\n":
        raise ValueError("no PROXY v2 signature")
    n = struct.unpack("!H", header[14:16])[0]
    if len(header) != 16 + n:
        raise ValueError("header of %d bytes, length field says 16 + %d" % (len(header), n))
    fam = header[13]
    body = header[16:]
    if fam == 0x11:
        if n < 12:
            raise ValueError("IPv4 block shorter than 12 bytes")
        src, dst = socket.inet_ntoa(body[0:4]), socket.inet_ntoa(body[4:8])
        sport, dport = struct.unpack("!HH", body[8:12])
        rest = body[12:]
    elif fam == 0x21:
        src = socket.inet_ntop(socket.AF_INET6, body[0:16])
        dst = socket.inet_ntop(socket.AF_INET6, body[16:32])
        sport, dport = struct.unpack("!HH", body[32:36])
        rest = body[36:]
    else:
        src = dst = sport = dport = None
        rest = body
    return {"cmd": header[12], "fam": fam, "src": src, "dst": dst, "sport": sport,
            "dport": dport, "tlvs": parse_tlvs(rest)}


class SClient:
    """An interactive `openssl s_client`: what is written to it is sent over TLS (each write
    read on its own when the caller waits between them: a read that starts with K or k is its
    key-update command, R renegotiation); what it receives is collected from its stdout."""

    def __init__(self, port, args=(), host="127.0.0.1"):
        self.p = subprocess.Popen([OPENSSL, "s_client", "-connect", "%s:%d" % (host, port),
                                   *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.out, self.err = bytearray(), bytearray()
        self._threads = [threading.Thread(target=self._pump, args=(f, buf), daemon=True)
                         for f, buf in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self._threads:
            t.start()

    def _pump(self, f, buf):
        while True:
            data = os.read(f.fileno(), 65536)
            if not data:
                return
            buf += data

    def send(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def wait_for(self, needle, timeout=TIMEOUT, where="out"):
        """Whether <needle> shows in its stdout (or stderr) within <timeout>."""
        buf = self.out if where == "out" else self.err
        return wskit.wait_until(lambda: needle in buf or self.p.poll() is not None and
                                needle in buf, timeout) and needle in buf

    def close(self, timeout=TIMEOUT):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait(timeout)
        finally:
            for t in self._threads:
                t.join(timeout)
            for f in (self.p.stdout, self.p.stderr):
                f.close()
