#!/usr/bin/env python3
"""A PEP 503 package index on 127.0.0.1 for the wheels in one folder
(stdlib only), so that every builder in the ML-stack race resolves and
downloads the same wheels at loopback speed instead of from PyPI.

    wheel_index.py DIR    prints the port it listens on, then serves until killed

    GET|HEAD /simple/                the project list
    GET|HEAD /simple/<name>/         links to /files/<wheel>#sha256=<hex>
    GET|HEAD /files/<wheel>          the file, streamed; a single `Range: bytes=`
                                     gets 206 (imgbake's lock reads a wheel's
                                     zip directory with range requests)
    GET      /_stats                 {"bytes_sent": n, "files": n}

Each wheel's sha256 is computed once and kept in DIR/.sha256/<wheel>.
"""
import hashlib
import http.server
import json
import os
import re
import sys
import threading

root = sys.argv[1]
stats = {"bytes_sent": 0, "files": 0}
lock = threading.Lock()


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def project_of(wheel):
    return normalize(wheel.split("-")[0])


def sha256_of(wheel):
    cache = os.path.join(root, ".sha256", wheel)
    try:
        with open(cache) as f:
            return f.read().strip()
    except FileNotFoundError:
        pass
    digest = hashlib.sha256()
    with open(os.path.join(root, wheel), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache + ".partial", "w") as f:
        f.write(digest.hexdigest())
    os.replace(cache + ".partial", cache)
    return digest.hexdigest()


def wheels():
    return sorted(f for f in os.listdir(root) if f.endswith(".whl"))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_body(self, status, body, content_type, head):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def page(self, links, head):
        html = "<!DOCTYPE html><html><body>\n" + "".join(f'<a href="{h}">{t}</a><br>\n' for h, t in links)
        self.send_body(200, (html + "</body></html>\n").encode(), "text/html", head)

    def handle_any(self, head):
        path = self.path.split("?")[0]
        parts = [p for p in path.split("/") if p]
        if path == "/_stats":
            return self.send_body(200, json.dumps(stats).encode(), "application/json", head)
        if parts == ["simple"]:
            names = sorted({project_of(w) for w in wheels()})
            return self.page([(f"/simple/{n}/", n) for n in names], head)
        if len(parts) == 2 and parts[0] == "simple":
            found = [w for w in wheels() if project_of(w) == normalize(parts[1])]
            if not found:
                return self.send_body(404, b"not found\n", "text/plain", head)
            return self.page([(f"/files/{w}#sha256={sha256_of(w)}", w) for w in found], head)
        if len(parts) == 2 and parts[0] == "files" and parts[1] in wheels():
            return self.send_file(os.path.join(root, parts[1]), head)
        return self.send_body(404, b"not found\n", "text/plain", head)

    def send_file(self, file, head):
        size = os.path.getsize(file)
        start, end, status = 0, size - 1, 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # a suffix: the last N bytes
                start = max(size - int(match.group(2)), 0)
            if start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        with lock:
            stats["files"] += 1
        with open(file, "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)
                with lock:
                    stats["bytes_sent"] += len(chunk)

    def do_GET(self):
        self.handle_any(False)

    def do_HEAD(self):
        self.handle_any(True)


for wheel in wheels():
    sha256_of(wheel)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
