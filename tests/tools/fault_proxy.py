"""An HTTP proxy that loses the answers of an S3 server, for the lost-answer tests.

    fault_proxy.py --listen PORT --upstream HOST:PORT --seed N --log FILE \
        --rule 'METHODS|PATH_REGEX|RATE|ACTION' [--rule ...]

Every request is forwarded to the upstream server unchanged (the Host header too, so
SigV4 signatures stay valid). A request whose method is in METHODS (comma separated) and
whose path (with query) matches PATH_REGEX is faulted with probability RATE:

  lose       forward it, let it land, then answer 500 (InternalError) or drop the
             connection without an answer (half each): a write that landed while its
             answer was lost
  refuse503  answer 503 (SlowDown) without forwarding
  cut        a GET without a Range header: forward it, then send the answer's headers
             (the full Content-Length) and half of its body, and close the connection: a
             download cut off part way. The ranged request that resumes it is not cut
  cutall     the same for every GET of more than one byte, ranged ones too: each resume
             brings half of what is left, until one byte is left

Whether a request is faulted depends only on the seed, the method, the path and how many
times that method and path were seen before, so a run repeats its faults even though
requests interleave differently. Each fault is appended to the log as one line.

Conditional writes (a PUT or POST carrying If-None-Match or If-Match) are forwarded one
at a time per key. s3s-fs checks the condition when a request arrives and renames the
uploaded body over the key when it ends, so two creates of one key that overlap can both
succeed there (seen: two `weir backfill` runs of one shard both "won" ledger entry 1).
S3 itself decides conditional writes atomically; with the per-key lock, s3s-fs behind
this proxy does too. The tests therefore always reach s3s-fs through this proxy, with no
rules when they inject no faults.
"""

import argparse
import hashlib
import http.client
import http.server
import re
import socket
import sys
import threading

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-connection", "content-length", "date", "server"}


def parse_rule(text):
    methods, pattern, rate, action = text.split("|")
    if action not in ("lose", "refuse503", "cut", "cutall"):
        raise SystemExit(f"unknown action {action!r}")
    return (set(m.strip().upper() for m in methods.split(",")), re.compile(pattern),
            float(rate), action)


class State:
    def __init__(self, args):
        self.upstream = args.upstream
        self.seed = args.seed
        self.rules = [parse_rule(r) for r in args.rule]
        self.seen = {}
        self.lock = threading.Lock()
        self.key_locks = {}
        self.log = open(args.log, "a", buffering=1)

    def key_lock(self, path):
        """The lock that orders conditional writes of the object at `path` (no query)."""
        key = path.split("?", 1)[0]
        with self.lock:
            return self.key_locks.setdefault(key, threading.Lock())

    def draw(self, method, path):
        """Returns (action, coin) for this request, or (None, 0)."""
        with self.lock:
            key = (method, path)
            n = self.seen.get(key, 0)
            self.seen[key] = n + 1
        digest = hashlib.sha256(f"{self.seed}|{method}|{path}|{n}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        for methods, pattern, rate, action in self.rules:
            if method in methods and pattern.search(path):
                if u < rate:
                    return action, digest[8] & 1
                return None, 0
        return None, 0

    def record(self, line):
        with self.lock:
            self.log.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None

    def log_message(self, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def drop_connection(self):
        """Closes the connection without (the rest of) an answer."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def handle_any(self):
        state = self.state
        method = self.command
        body = self.read_body()
        action, coin = state.draw(method, self.path)
        if action == "refuse503":
            state.record(f"refuse503 {method} {self.path}")
            self.answer(503, b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>",
                        [("Content-Type", "application/xml")])
            return
        conditional = method in ("PUT", "POST") and (
            "If-None-Match" in self.headers or "If-Match" in self.headers)
        key_lock = state.key_lock(self.path) if conditional else None
        if key_lock:
            key_lock.acquire()
        conn = http.client.HTTPConnection(state.upstream, timeout=60)
        try:
            conn.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                    conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body)))
            try:
                conn.endheaders(body)
            except (BrokenPipeError, ConnectionResetError):
                # The server may answer before it has read the body (a failed
                # precondition) and close; its answer is still there to read.
                pass
            resp = conn.getresponse()
            data = resp.read()
            headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
            status = resp.status
        except OSError as e:
            self.answer(502, f"upstream: {e}".encode())
            return
        finally:
            conn.close()
            if key_lock:
                key_lock.release()
        if action == "lose":
            if coin:
                state.record(f"lose-drop {method} {self.path} upstream={status}")
                self.drop_connection()
                return
            state.record(f"lose-500 {method} {self.path} upstream={status}")
            self.answer(500, b"<Error><Code>InternalError</Code><Message>injected</Message></Error>",
                        [("Content-Type", "application/xml")])
            return
        first_get = "Range" not in self.headers and status == 200
        if (method == "GET" and len(data) > 1
                and ((action == "cut" and first_get)
                     or (action == "cutall" and status in (200, 206)))):
            sent = len(data) // 2
            state.record(f"cut {method} {self.path} sent={sent}/{len(data)}")
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:sent])
            self.wfile.flush()
            self.drop_connection()
            return
        if method == "HEAD":
            # A HEAD answer carries the object's length but no body.
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
            self.end_headers()
            return
        self.answer(status, data, headers)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rule", action="append", default=[])
    p.add_argument("--log", required=True)
    args = p.parse_args()
    Handler.state = State(args)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.listen), Handler)
    server.daemon_threads = True
    print(f"listening on 127.0.0.1:{args.listen}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
