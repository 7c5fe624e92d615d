"""A fault-injecting HTTP proxy for tests: walrus (boto3) talks to it, it talks to the real
SeaweedFS behind it, and rules chosen by the test (changeable while walrus runs) turn some
requests into failures.

Standard library only; one thread per client connection; every wait has a timeout and stop()
closes every socket, so nothing outlives the test. It speaks just enough HTTP/1.1 for boto3:
Content-Length and chunked bodies, keep-alive, `Expect: 100-continue` (answered here, and left
out upstream: botocore does not sign it).

A rule (Rule(...)) matches requests by method and a regular expression on the path, and fires
on the nth match, on every match, or with a seeded probability, at most `limit` times. Actions:

    error           answer with `status` and an S3 XML error `code` (SlowDown, InternalError...);
                    nothing reaches the server
    stall           wait `seconds` before forwarding (a slow or hung server)
    reset_request   read the headers and half of the body, then reset the connection; the
                    server never sees the request
    drop_response   forward the whole request (the server acts on it), then reset the
                    connection instead of answering: the client cannot tell it succeeded
    reset_response  forward, send the response headers and half of the body, then reset
    truncate        forward, send the response headers and half of the body, then close cleanly
"""
import random
import re
import socket
import struct
import threading
import time

ACTIONS = ("error", "stall", "reset_request", "drop_response", "reset_response", "truncate")
IO_TIMEOUT = 30          # seconds any single socket read or write may take
MAX_HEADER_BYTES = 65536
COPY_CHUNK = 65536
MAX_STALL = 120          # a stall rule never holds a connection longer than this


class Rule(object):
    def __init__(self, action, methods=None, path=None, nth=None, every=False, probability=None, limit=None,
                 status=503, code="SlowDown", seconds=5.0, seed=0):
        if action not in ACTIONS:
            raise ValueError("unknown action %r (one of %s)" % (action, ", ".join(ACTIONS)))
        if sum(x is not None and x is not False for x in (nth, every or None, probability)) != 1:
            raise ValueError("a rule needs exactly one of nth=, every=True, probability=")
        self.action, self.status, self.code = action, status, code
        self.seconds = min(float(seconds), MAX_STALL)
        self.methods = set(m.upper() for m in methods) if methods else None
        self.path = re.compile(path) if path else None
        self.nth, self.every, self.probability, self.limit = nth, every, probability, limit
        self.random = random.Random(seed)
        self.matched = 0
        self.fired = 0

    def decide(self, method, path):
        """Whether this rule fires for the request (called under the proxy's lock)."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.path is not None and not self.path.search(path):
            return False
        if self.limit is not None and self.fired >= self.limit:
            return False
        self.matched += 1
        if self.nth is not None:
            fire = self.matched == self.nth
        elif self.every:
            fire = True
        else:
            fire = self.random.random() < self.probability
        if fire:
            self.fired += 1
        return fire

    def __repr__(self):
        return "Rule(%s, methods=%s, path=%s, fired=%d/%d)" % (
            self.action, sorted(self.methods) if self.methods else None,
            self.path.pattern if self.path else None, self.fired, self.matched)


def error_body(code, message="injected by the test's fault proxy"):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '<RequestId>faultproxy</RequestId></Error>' % (code, message)).encode()


class _Closed(Exception):
    """The peer closed the connection between requests (a normal end of keep-alive)."""


class _Conn(object):
    """A socket with a read buffer: header blocks, exact byte counts, lines."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        sock.settimeout(IO_TIMEOUT)

    def _fill(self):
        data = self.sock.recv(COPY_CHUNK)
        if not data:
            raise _Closed()
        self.buf += data

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEADER_BYTES:
                raise ValueError("header block too large")
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _sep, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return lines[0], headers

    def read_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_some(self, limit):
        if not self.buf:
            self._fill()
        out, self.buf = self.buf[:limit], self.buf[limit:]
        return out

    def body_chunks(self, headers, no_body=False):
        """Yield the raw bytes of the body (chunk framing included, so it can be relayed as is)."""
        if no_body:
            return
        if _header(headers, "transfer-encoding").lower() == "chunked":
            while True:
                line = self.read_line()
                yield line + b"\r\n"
                size = int(line.split(b";")[0], 16)
                left = size + 2
                while left:
                    data = self.read_some(left)
                    left -= len(data)
                    yield data
                if size == 0:
                    return
        left = int(_header(headers, "content-length") or 0)
        while left:
            data = self.read_some(min(left, COPY_CHUNK))
            left -= len(data)
            yield data


def _header(headers, name):
    for key, value in headers:
        if key.lower() == name:
            return value
    return ""


def _encode_head(first, headers):
    return (first + "\r\n" + "".join("%s: %s\r\n" % kv for kv in headers) + "\r\n").encode("latin-1")


def _reset(sock):
    """Close with RST instead of FIN (SO_LINGER 0): the peer sees 'connection reset'."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class FaultProxy(object):
    """proxy = FaultProxy(upstream_port).start(); proxy.endpoint; proxy.set_rules([...]); proxy.stop()."""

    def __init__(self, upstream_port, upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.rules = []
        self.log = []            # (method, path, action or "forward", status or None)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sockets = set()
        self.threads = []
        self.listener = None

    # -- control, from the test ---------------------------------------------------------
    def start(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.5)
        self.port = self.listener.getsockname()[1]
        self.endpoint = "http://127.0.0.1:%d" % self.port
        thread = threading.Thread(target=self._accept, name="faultproxy-accept", daemon=True)
        thread.start()
        self.threads.append(thread)
        return self

    def set_rules(self, rules):
        with self.lock:
            self.rules = list(rules)

    def clear(self):
        self.set_rules([])

    def fired(self, action=None):
        """Entries of the log where a rule fired (of one action, if given)."""
        with self.lock:
            return [e for e in self.log if e[2] != "forward" and (action is None or e[2] == action)]

    def stop(self):
        self.stopping.set()
        with self.lock:
            socks = list(self.sockets)
        for sock in socks:
            try:
                sock.close()
            except OSError:
                pass
        if self.listener is not None:
            self.listener.close()
        for thread in self.threads:
            thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- the proxy itself ---------------------------------------------------------------
    def _track(self, sock):
        with self.lock:
            self.sockets.add(sock)
        return sock

    def _untrack(self, sock):
        with self.lock:
            self.sockets.discard(sock)
        try:
            sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stopping.is_set():
            try:
                client, _addr = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(self._track(client),), daemon=True)
            thread.start()
            with self.lock:
                self.threads = [t for t in self.threads if t.is_alive()] + [thread]

    def _choose(self, method, path):
        with self.lock:
            for rule in self.rules:
                if rule.decide(method, path):
                    return rule
        return None

    def _record(self, method, path, action, status):
        with self.lock:
            self.log.append((method, path, action, status))

    def _serve(self, client_sock):
        client, upstream = _Conn(client_sock), None
        try:
            while not self.stopping.is_set():
                try:
                    first, headers = client.read_head()
                except _Closed:
                    return
                method, path = first.split(" ")[:2]
                rule = self._choose(method, path)
                action = rule.action if rule else "forward"
                expect = _header(headers, "expect").lower() == "100-continue"
                headers = [(k, v) for k, v in headers if k.lower() != "expect"]
                if rule and action == "error":
                    body = b"" if method == "HEAD" else error_body(rule.code)
                    # Like S3: refuse before the body is sent when the client waits for 100-continue.
                    if not expect:
                        for _chunk in client.body_chunks(headers):
                            pass
                    client_sock.sendall(_encode_head("HTTP/1.1 %d Injected" % rule.status, [
                        ("Content-Type", "application/xml"), ("Content-Length", str(len(error_body(rule.code)))),
                        ("Connection", "close" if expect else "keep-alive")]) + body)
                    self._record(method, path, action, rule.status)
                    if expect:
                        return
                    continue
                if expect:
                    client_sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if rule and action == "reset_request":
                    total = int(_header(headers, "content-length") or 0)
                    got = 0
                    for chunk in client.body_chunks(headers):
                        got += len(chunk)
                        if got >= total // 2:
                            break
                    self._record(method, path, action, None)
                    _reset(client_sock)
                    return
                if rule and action == "stall":
                    self._record(method, path, action, None)
                    if self.stopping.wait(rule.seconds):
                        return
                if upstream is None:
                    upstream = _Conn(self._track(socket.create_connection(self.upstream, timeout=IO_TIMEOUT)))
                upstream.sock.sendall(_encode_head(first, headers))
                for chunk in client.body_chunks(headers):
                    upstream.sock.sendall(chunk)
                status_line, rheaders = upstream.read_head()
                status = int(status_line.split(" ")[1])
                no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
                if rule and action == "drop_response":
                    for _chunk in upstream.body_chunks(rheaders, no_body):
                        pass
                    self._record(method, path, action, status)
                    _reset(client_sock)
                    return
                client_sock.sendall(_encode_head(status_line, rheaders))
                if rule and action in ("reset_response", "truncate"):
                    total = int(_header(rheaders, "content-length") or 0)
                    sent = 0
                    for chunk in upstream.body_chunks(rheaders, no_body):
                        if sent + len(chunk) >= total // 2:
                            client_sock.sendall(chunk[:max(0, total // 2 - sent)])
                            break
                        client_sock.sendall(chunk)
                        sent += len(chunk)
                    self._record(method, path, action, status)
                    if action == "truncate":
                        client_sock.shutdown(socket.SHUT_RDWR)
                        client_sock.close()
                    else:
                        _reset(client_sock)
                    return
                if rule is None:
                    self._record(method, path, "forward", status)
                for chunk in upstream.body_chunks(rheaders, no_body):
                    client_sock.sendall(chunk)
                if _header(rheaders, "connection").lower() == "close":
                    self._untrack(upstream.sock)
                    upstream = None
        except (OSError, ValueError, _Closed):
            return  # a socket broke or the proxy is stopping: drop this connection
        finally:
            self._untrack(client_sock)
            if upstream is not None:
                self._untrack(upstream.sock)


def wait_for(predicate, timeout, what, interval=0.1):
    """Poll predicate() until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %d s waiting for %s" % (timeout, what))
        time.sleep(interval)
