"""A small Hugging Face hub on 127.0.0.1 for the fetch tests: the routes the real `huggingface_hub` client calls.

* GET  /api/{datasets|models}/{repo}/revision/{rev}: the repository's info with `sha` (the commit) and
  `siblings` (rfilename, size, lfs {size, sha256, pointerSize}), as the hub answers with `blobs=True`.
* HEAD /[datasets/]{repo}/resolve/{rev}/{path}: ETag, X-Repo-Commit, Content-Length (what `get_hf_file_metadata`
  reads).
* GET  the same: the bytes, honouring `Range: bytes=N-` with 206 and Content-Range.

Faults for the tests: `drop_once` (paths whose first GET sends the headers and half the body, then closes the
connection), `published` (a sha256 to publish instead of the true one: a checksum mismatch). `gets` records each
GET's path and Range header.
"""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub:
    def __init__(self, repos: dict):
        """repos: {(repo_type, repo): {path: bytes}}."""
        self.repos = repos
        self.drop_once: set[str] = set()
        self.published: dict[str, str] = {}
        self.gets: list[tuple[str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _send(self, code, headers, data=b""):
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if data:
                    self.wfile.write(data)

            def _serve(self, body):
                path = unquote(urlparse(self.path).path)
                if path.startswith("/api/"):
                    return self._info(path)
                found = hub.locate(path)
                if found is None:
                    return self._send(404, {"Content-Length": "0", "X-Error-Code": "EntryNotFound"})
                name, data = found
                sha = hashlib.sha256(data).hexdigest()
                headers = {"ETag": f'"{sha}"', "X-Repo-Commit": COMMIT, "Accept-Ranges": "bytes"}
                if not body:
                    return self._send(200, {**headers, "Content-Length": str(len(data))})
                rng = self.headers.get("Range")
                hub.gets.append((name, rng))
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if name in hub.drop_once and not rng:
                    hub.drop_once.discard(name)
                    self._send(200, {**headers, "Content-Length": str(len(data))})
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                part = data[start:]
                code = 206 if rng else 200
                extra = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if rng else {}
                self._send(code, {**headers, **extra, "Content-Length": str(len(part))}, part)

            def _info(self, path):
                # /api/datasets/{org}/{name}/revision/{rev}
                parts = path.split("/")
                kind, repo = parts[2][:-1], "/".join(parts[3:5])
                files = hub.repos.get((kind, repo))
                if files is None:
                    return self._send(404, {"Content-Length": "0", "X-Error-Code": "RepoNotFound"})
                siblings = [{"rfilename": p, "size": len(d), "blobId": "0" * 40,
                             "lfs": {"size": len(d), "pointerSize": 134,
                                     "sha256": hub.published.get(p, hashlib.sha256(d).hexdigest())}}
                            for p, d in files.items()]
                data = json.dumps({"id": repo, "sha": COMMIT, "siblings": siblings, "private": False}).encode()
                self._send(200, {"Content-Type": "application/json", "Content-Length": str(len(data))}, data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def locate(self, path: str):
        """(file path, bytes) of /datasets/{repo}/resolve/{rev}/{file} or /{repo}/resolve/{rev}/{file}."""
        parts = path.strip("/").split("/")
        kind = "dataset" if parts[0] == "datasets" else "model"
        if kind == "dataset":
            parts = parts[1:]
        if len(parts) < 5 or parts[2] != "resolve":
            return None
        files = self.repos.get((kind, "/".join(parts[:2])), {})
        name = "/".join(parts[4:])
        return (name, files[name]) if name in files else None

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
