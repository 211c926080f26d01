#!/usr/bin/env python3
"""A counting HTTP proxy in front of an S3 endpoint (the local stack's moto).

Forwards every request unchanged to UPSTREAM and counts, per object key (path-style
`/bucket/key`), the requests and body bytes that crossed it: GET response bodies (what a reader
fetched, ranges included) and PUT/POST request bodies (PutObject, UploadPart). It measures from
outside the handlers, so the figures cannot drift from what the code does.

    s3-counting-proxy.py UPSTREAM PORT_FILE

listens on 127.0.0.1 on a free port, writes the port to PORT_FILE, and serves
`GET /__counting_proxy__/stats` (the counts as JSON) and `POST /__counting_proxy__/reset`.
"""

import http.client
import http.server
import json
import sys
import threading
import urllib.parse

STATS_PATH = "/__counting_proxy__/stats"
RESET_PATH = "/__counting_proxy__/reset"
# Hop-by-hop headers are the proxy's own business (RFC 9110 section 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-connection"}


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            # key -> {"get_requests", "get_bytes", "put_requests", "put_bytes", "other_requests"}
            self.keys = {}

    def add(self, key, field, amount):
        with self.lock:
            entry = self.keys.setdefault(key, {"get_requests": 0, "get_bytes": 0,
                                               "put_requests": 0, "put_bytes": 0,
                                               "other_requests": 0})
            entry[field] += amount

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.keys))


def object_key(path):
    """`bucket/key` of a path-style request (query removed, percent-decoding undone)."""
    parsed = urllib.parse.urlsplit(path)
    return urllib.parse.unquote(parsed.path.lstrip("/"))


def make_handler(upstream, counts):
    target = urllib.parse.urlsplit(upstream)
    local = threading.local()

    def connection():
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
        return local.conn

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return bytes(body)
                    body += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def reply(self, status, body, headers=(), head_length=None):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            # A HEAD answer has no body but names the object's length.
            length = head_length if self.command == "HEAD" and head_length else len(body)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def forward(self):
            body = self.read_body()
            if self.path.startswith(STATS_PATH):
                return self.reply(200, json.dumps(counts.snapshot()).encode(),
                                  [("Content-Type", "application/json")])
            if self.path.startswith(RESET_PATH):
                counts.reset()
                return self.reply(204, b"")
            headers = {name: value for name, value in self.headers.items()
                       if name.lower() not in HOP_BY_HOP}
            if body or "Content-Length" in self.headers or "Transfer-Encoding" in self.headers:
                headers["Content-Length"] = str(len(body))
            for attempt in range(2):
                try:
                    conn = connection()
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    break
                except (http.client.HTTPException, OSError):
                    # A kept-alive upstream connection that moto closed: reconnect once.
                    local.conn = None
                    if attempt == 1:
                        raise
            key = object_key(self.path)
            if self.command == "GET":
                counts.add(key, "get_requests", 1)
                counts.add(key, "get_bytes", len(payload))
            elif self.command in ("PUT", "POST"):
                counts.add(key, "put_requests", 1)
                counts.add(key, "put_bytes", len(body))
            else:
                counts.add(key, "other_requests", 1)
            passed = [(name, value) for name, value in response.getheaders()
                      if name.lower() not in HOP_BY_HOP and name.lower() != "content-length"]
            self.reply(response.status, payload, passed, response.getheader("Content-Length"))

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = forward

    return Handler


def main():
    upstream, port_file = sys.argv[1], sys.argv[2]
    counts = Counts()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(upstream, counts))
    server.daemon_threads = True
    with open(port_file + ".partial", "w") as out:
        out.write(str(server.server_address[1]))
    import os
    os.replace(port_file + ".partial", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
