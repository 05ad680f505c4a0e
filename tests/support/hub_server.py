#!/usr/bin/env python3
"""A small Hugging Face hub on 127.0.0.1 for imgbake's tests (stdlib only).

It speaks the parts of the hub protocol that imgbake and `huggingface_hub`
use, for repos that the test writes to a directory:

    ROOT/<org>/<name>/<commit>/<files...>    the files of one commit
    ROOT/<org>/<name>/refs/<branch>          the commit a branch points to

Endpoints on the hub port:

    GET  /api/models/<org>/<name>[/revision/<rev>]   {"id", "sha", "siblings": [{"rfilename"}]}
    GET  /api/models/<org>/<name>/tree/<rev>         [{"type": "file", "path", "size", "oid", "lfs"?}]
    HEAD|GET /<org>/<name>/resolve/<rev>/<path>      X-Repo-Commit, ETag; files of 1 MiB or more
         are "LFS": 302 to the CDN with X-Linked-Etag (sha256) and X-Linked-Size, on HEAD too
    GET  /_stats                                      {"requests": {"METHOD /path": n}, "cdn_authorization": n,
                                                       "bytes_sent": {"/path": n}, "faults_used": n,
                                                       "bodies": [["/path", first byte], …] in order}

The CDN (`/cdn/<sha256>`, Range support) listens on a second port, so that
it is another origin, as cdn-lfs.hf.co is for huggingface.co: clients must
read file metadata from the 302 itself and must not send the token there
(`cdn_authorization` counts CDN requests that carried an Authorization header).

Test hooks (files under ROOT, read on every request):

    ROOT/.corrupt/<sha256>   the CDN serves that blob with one byte flipped
    ROOT/.fail_next          holds N: the next N hub requests get a 503
    ROOT/.faults.json        a list of faults for file responses (hub files and CDN
                             blobs), each {"kind", "count", "match"?, ...}: a
                             response takes the first fault whose `match` is a
                             substring of its path and whose count is left, and
                             uses one of it (after letting `skip` matching
                             responses pass untouched). Kinds:
        drop      {"after": N}: N body bytes, then the connection is reset
        status    {"status": 503, "retry_after"?: S}: that status, no body
        truncate  {"after": N}: Content-Length says N, N bytes are sent (a clean short body)
        flip      {"offset"?: N}: one byte flipped (default: the middle of the file)
        stall     {"after": N, "seconds": S}: N bytes, then S seconds of silence, then close
        hangup    the connection is reset before any response, on any GET (a
                  hub request too, not only file bodies); the client's error
                  then names the URL it asked for
        norange   the Range header is ignored: 200 with the whole file (or
                  "norange": true on another fault, to combine them)
    ROOT/<org>/<name>/<commit>.extra_siblings
                             more names for the listing, one a line, with no
                             file behind them (e.g. `../escape`)

Usage: hub_server.py --root DIR [--port 0] [--token TOKEN]
Prints the hub port on the first stdout line and the CDN port on the second.
"""

import argparse
import hashlib
import json
import os
import re
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_THRESHOLD = 1024 * 1024
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 256 * 1024
# The signature every CDN redirect carries (tests check it is never printed).
CDN_SIGNATURE = "cdn-signature-0f1e2d3c"

STATE_LOCK = threading.Lock()
REQUESTS = {}
CDN_AUTHORIZATION = [0]
BYTES_SENT = {}
FAULTS_USED = [0]
# (url path, first byte) of every file body served, in order.
BODIES = []
# sha256 of each served file, keyed by its absolute path (files never change once written).
SHA256_CACHE = {}


def count(method, path):
    with STATE_LOCK:
        key = f"{method} {path}"
        REQUESTS[key] = REQUESTS.get(key, 0) + 1


def sha256_of(path):
    with STATE_LOCK:
        if path in SHA256_CACHE:
            return SHA256_CACHE[path]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    value = digest.hexdigest()
    with STATE_LOCK:
        SHA256_CACHE[path] = value
    return value


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256, size):
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class Hub:
    def __init__(self, root, token):
        self.root = os.path.abspath(root)
        self.token = token
        self.cdn_port = None

    def repo_dir(self, repo):
        parts = repo.split("/")
        if len(parts) != 2 or any(p in ("", ".", "..") for p in parts):
            return None
        path = os.path.join(self.root, *parts)
        return path if os.path.isdir(path) else None

    def resolve(self, repo_dir, rev):
        """The commit of a branch name or commit sha, or None."""
        ref = os.path.join(repo_dir, "refs", rev)
        if ".." not in rev.split("/") and os.path.isfile(ref):
            with open(ref) as f:
                return f.read().strip()
        if COMMIT_RE.match(rev) and os.path.isdir(os.path.join(repo_dir, rev)):
            return rev
        return None

    def files(self, repo_dir, commit):
        base = os.path.join(repo_dir, commit)
        out = []
        for folder, dirs, names in os.walk(base):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(folder, name)
                out.append(os.path.relpath(full, base).replace(os.sep, "/"))
        # A test may list a path that is not on disk (e.g. `../escape`) by
        # writing it to ROOT/<org>/<name>/<commit>.extra_siblings, one a line.
        extra = base + ".extra_siblings"
        if os.path.isfile(extra):
            with open(extra) as f:
                out.extend(line.strip() for line in f if line.strip())
        return sorted(out)

    def take_fault(self, path, kinds=None):
        """The first fault of ROOT/.faults.json matching `path` (and of one of
        `kinds`, when given), using one of its count."""
        faults_path = os.path.join(self.root, ".faults.json")
        with STATE_LOCK:
            try:
                with open(faults_path) as f:
                    faults = json.load(f)
            except (OSError, ValueError):
                return None
            for fault in faults:
                if kinds is not None and fault.get("kind") not in kinds:
                    continue
                if fault.get("count", 0) > 0 and fault.get("match", "") in path:
                    if fault.get("skip", 0) > 0:
                        # This request passes untouched; the fault waits for a later one.
                        fault["skip"] -= 1
                        with open(faults_path + ".tmp", "w") as f:
                            json.dump(faults, f)
                        os.replace(faults_path + ".tmp", faults_path)
                        return None
                    fault["count"] -= 1
                    FAULTS_USED[0] += 1
                    with open(faults_path + ".tmp", "w") as f:
                        json.dump(faults, f)
                    os.replace(faults_path + ".tmp", faults_path)
                    return dict(fault)
            return None

    def take_failure(self):
        path = os.path.join(self.root, ".fail_next")
        with STATE_LOCK:
            try:
                with open(path) as f:
                    left = int(f.read().strip() or "0")
            except (OSError, ValueError):
                return False
            if left <= 0:
                return False
            with open(path, "w") as f:
                f.write(str(left - 1))
            return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "imgbake-test-hub"
    hub = None  # set per server class
    is_cdn = False

    def log_message(self, format, *args):  # quiet: tests read /_stats instead
        pass

    # -- plumbing -----------------------------------------------------------

    def send(self, status, body=b"", headers=None, content_type="application/json"):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, value, headers=None):
        self.send(status, json.dumps(value).encode(), headers)

    def error(self, status, code, message):
        self.send_json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

    def send_file(self, path, headers, corrupt=False):
        """The bytes of `path`, honouring one `Range: bytes=a-b` (206), with any fault of ROOT/.faults.json."""
        size = os.path.getsize(path)
        start, end, status = 0, size - 1, 200
        url_path = urlsplit(self.path).path
        fault = self.hub.take_fault(url_path) if self.command == "GET" else None
        kind = fault["kind"] if fault else None
        if kind == "status":
            extra = {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else {}
            return self.send(fault.get("status", 503), b"", extra, "text/plain")

        ignore_range = kind == "norange" or (fault or {}).get("norange", False)
        wanted = None if ignore_range else self.headers.get("Range")
        if wanted:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted.strip())
            if not match or (match.group(1) == "" and match.group(2) == ""):
                return self.send(416, headers={"Content-Range": f"bytes */{size}"})
            if match.group(1) == "":
                start = max(0, size - int(match.group(2)))
            else:
                start = int(match.group(1))
                if match.group(2) != "":
                    end = min(end, int(match.group(2)))
            if start >= size or start > end:
                return self.send(416, headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers = dict(headers, **{"Content-Range": f"bytes {start}-{end}/{size}"})
        length = end - start + 1 if size else 0
        if self.command == "GET":
            with STATE_LOCK:
                BODIES.append([url_path, start])
        # Bytes to send before the fault acts (drop, truncate, stall).
        cut = min(length, fault.get("after", 0)) if kind in ("drop", "truncate", "stall") else length
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if not ignore_range:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(cut if kind == "truncate" else length))
        self.end_headers()
        if self.command == "HEAD":
            return
        flip_at = size // 2 if corrupt else -1
        if kind == "flip":
            flip_at = fault.get("offset", size // 2)
        with open(path, "rb") as f:
            f.seek(start)
            offset, left = start, cut
            while left > 0:
                block = bytearray(f.read(min(CHUNK, left)))
                if not block:
                    break
                if offset <= flip_at < offset + len(block):
                    block[flip_at - offset] ^= 0xFF
                self.wfile.write(block)
                with STATE_LOCK:
                    BYTES_SENT[url_path] = BYTES_SENT.get(url_path, 0) + len(block)
                offset += len(block)
                left -= len(block)
        if kind == "stall":
            self.wfile.flush()
            time.sleep(fault.get("seconds", 30))
            self.close_connection = True
        elif kind == "drop":
            self.wfile.flush()
            # SO_LINGER 0: close sends a reset, as a dying proxy would.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif kind == "truncate":
            self.close_connection = True

    # -- dispatch -----------------------------------------------------------

    def do_HEAD(self):
        self.dispatch()

    def do_GET(self):
        self.dispatch()

    def dispatch(self):
        path = urlsplit(self.path).path
        try:
            if path == "/_stats":
                with STATE_LOCK:
                    stats = {
                        "requests": dict(REQUESTS),
                        "cdn_authorization": CDN_AUTHORIZATION[0],
                        "bytes_sent": dict(BYTES_SENT),
                        "faults_used": FAULTS_USED[0],
                        "bodies": list(BODIES),
                    }
                return self.send_json(200, stats)
            count(self.command, path)
            if self.command == "GET" and self.hub.take_fault(path, kinds=("hangup",)):
                return self.hang_up()
            if self.is_cdn:
                return self.cdn(path)
            return self.route(path)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def hang_up(self):
        """Reset the connection before any response."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def cdn(self, path):
        if self.headers.get("Authorization"):
            with STATE_LOCK:
                CDN_AUTHORIZATION[0] += 1
        match = re.fullmatch(r"/cdn/([0-9a-f]{64})", path)
        blob = os.path.join(self.hub.root, ".blobs", match.group(1)) if match else None
        if not blob or not os.path.isfile(blob):
            return self.error(404, "EntryNotFound", "no such blob")
        corrupt = os.path.exists(os.path.join(self.hub.root, ".corrupt", match.group(1)))
        self.send_file(blob, {"ETag": f'"{match.group(1)}"'}, corrupt=corrupt)

    def route(self, path):
        hub = self.hub
        if hub.token is not None and self.headers.get("Authorization") != f"Bearer {hub.token}":
            return self.error(401, "Unauthorized", "Invalid credentials in Authorization header")
        if hub.take_failure():
            return self.error(503, "ServiceUnavailable", "try again")

        # Percent-decode each segment after splitting, so `refs%2Fpr%2F1` stays one segment.
        segments = [unquote(s) for s in path.split("/")[1:]]
        if segments[:2] == ["api", "models"] and len(segments) >= 4:
            repo = "/".join(segments[2:4])
            rest = segments[4:]
            if not rest:
                return self.api_revision(repo, "main")
            if rest[0] == "revision" and len(rest) >= 2:
                return self.api_revision(repo, "/".join(rest[1:]))
            if rest[0] == "tree" and len(rest) >= 2:
                return self.api_tree(repo, rest[1])
        if len(segments) >= 5 and segments[2] == "resolve":
            repo = "/".join(segments[:2])
            return self.resolve_file(repo, segments[3], "/".join(segments[4:]))
        return self.error(404, "EntryNotFound", f"no route for {path}")

    # -- hub endpoints ------------------------------------------------------

    def repo_and_commit(self, repo, rev):
        repo_dir = self.hub.repo_dir(repo)
        if repo_dir is None:
            self.error(404, "RepoNotFound", f"Repository {repo} not found")
            return None, None
        commit = self.hub.resolve(repo_dir, rev)
        if commit is None:
            self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return None, None
        return repo_dir, commit

    def api_revision(self, repo, rev):
        repo_dir, commit = self.repo_and_commit(repo, rev)
        if commit is None:
            return
        siblings = [{"rfilename": name} for name in self.hub.files(repo_dir, commit)]
        self.send_json(200, {"id": repo, "modelId": repo, "sha": commit, "private": False, "siblings": siblings})

    def api_tree(self, repo, rev):
        repo_dir, commit = self.repo_and_commit(repo, rev)
        if commit is None:
            return
        entries = []
        for name in self.hub.files(repo_dir, commit):
            full = os.path.join(repo_dir, commit, name)
            if not os.path.isfile(full):
                continue
            size = os.path.getsize(full)
            entry = {"type": "file", "path": name, "size": size}
            if size >= LFS_THRESHOLD:
                sha256 = sha256_of(full)
                entry["oid"] = git_blob_sha1(lfs_pointer(sha256, size))
                entry["lfs"] = {"oid": sha256, "size": size, "pointerSize": len(lfs_pointer(sha256, size))}
            else:
                with open(full, "rb") as f:
                    entry["oid"] = git_blob_sha1(f.read())
            entries.append(entry)
        self.send_json(200, entries)

    def resolve_file(self, repo, rev, name):
        repo_dir, commit = self.repo_and_commit(repo, rev)
        if commit is None:
            return
        base = os.path.realpath(os.path.join(repo_dir, commit))
        full = os.path.realpath(os.path.join(base, name))
        if not full.startswith(base + os.sep) or not os.path.isfile(full):
            return self.send(
                404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, "text/plain"
            )
        size = os.path.getsize(full)
        if size >= LFS_THRESHOLD:
            sha256 = sha256_of(full)
            blob = os.path.join(self.hub.root, ".blobs", sha256)
            if not os.path.exists(blob):
                os.makedirs(os.path.dirname(blob), exist_ok=True)
                try:
                    os.link(full, blob)
                except FileExistsError:
                    pass
            headers = {
                "X-Repo-Commit": commit,
                # The git object is the LFS pointer; the hub's ETag is its blob sha1.
                "ETag": f'"{git_blob_sha1(lfs_pointer(sha256, size))}"',
                "X-Linked-Etag": f'"{sha256}"',
                "X-Linked-Size": str(size),
                # Signed, as cdn-lfs.hf.co's are: the signature must never be printed.
                "Location": f"http://127.0.0.1:{self.hub.cdn_port}/cdn/{sha256}"
                f"?Expires=4102444800&Signature={CDN_SIGNATURE}&Key-Pair-Id=IMGBAKETEST",
            }
            return self.send(302, b"", headers, "text/plain")
        with open(full, "rb") as f:
            etag = git_blob_sha1(f.read())
        self.send_file(full, {"X-Repo-Commit": commit, "ETag": f'"{etag}"'})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token")
    args = parser.parse_args()

    hub = Hub(args.root, args.token)
    hub_handler = type("HubHandler", (Handler,), {"hub": hub, "is_cdn": False})
    cdn_handler = type("CdnHandler", (Handler,), {"hub": hub, "is_cdn": True})
    hub_server = ThreadingHTTPServer(("127.0.0.1", args.port), hub_handler)
    cdn_server = ThreadingHTTPServer(("127.0.0.1", 0), cdn_handler)
    hub_server.daemon_threads = True
    cdn_server.daemon_threads = True
    hub.cdn_port = cdn_server.server_address[1]
    threading.Thread(target=cdn_server.serve_forever, daemon=True).start()
    print(hub_server.server_address[1], flush=True)
    print(hub.cdn_port, flush=True)
    try:
        hub_server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
