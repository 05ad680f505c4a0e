"""A private package index for tests: PEP 503 simple pages for every wheel in
a folder, behind HTTP basic auth, as a company's Artifactory or devpi is.

private_index.py DIR USER PASSWORD   prints the port it listens on (127.0.0.1),
then serves until killed. GET/HEAD /simple/<name>/ and /files/<file>; any
request without the credentials gets 401 with a Basic challenge. Requests
that carried a wrong or no Authorization header are counted at /_stats.
"""
import base64, hashlib, http.server, json, os, re, sys

root, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
stats = {"unauthorized": 0, "files": 0}


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, body=b"", content_type="text/html", head=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="private"')
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def handle_any(self, head):
        if self.path == "/_stats":
            return self.send(200, json.dumps(stats).encode(), "application/json", head)
        if self.headers.get("Authorization") != expected:
            stats["unauthorized"] += 1
            return self.send(401, b"unauthorized", head=head)
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if len(parts) == 2 and parts[0] == "simple":
            links = []
            for file in sorted(os.listdir(root)):
                if normalize(file.split("-")[0]) == normalize(parts[1]):
                    digest = hashlib.sha256(open(os.path.join(root, file), "rb").read()).hexdigest()
                    links.append(f'<a href="/files/{file}#sha256={digest}">{file}</a><br>')
            if not links:
                return self.send(404, b"not found", head=head)
            return self.send(200, ("<html><body>" + "".join(links) + "</body></html>").encode(), head=head)
        if len(parts) == 2 and parts[0] == "files" and os.path.exists(os.path.join(root, parts[1])):
            stats["files"] += 1
            data = open(os.path.join(root, parts[1]), "rb").read()
            return self.send(200, data, "application/octet-stream", head)
        return self.send(404, b"not found", head=head)

    def do_GET(self):
        self.handle_any(False)

    def do_HEAD(self):
        self.handle_any(True)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
