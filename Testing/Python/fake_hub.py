"""A local stand-in for the Hugging Face Hub's file endpoint, on 127.0.0.1 only.

It answers ``HEAD``/``GET /{repo}/resolve/{revision}/{path}`` with the headers
the real ``huggingface_hub`` client reads (X-Repo-Commit, ETag,
Content-Length), so downloads go through the real client code. ``token``
makes the repository gated: without ``Authorization: Bearer <token>`` it
answers 401 with ``X-Error-Code: GatedRepo`` as the Hub does.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self, repo_id: str, files: dict, token: str | None = None):
        self.repo_id, self.files, self.token = repo_id, files, token
        self.requests: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self, body: bool):
                hub.requests.append({"method": self.command, "path": self.path,
                                     "authorization": self.headers.get("Authorization")})
                prefix = f"/{hub.repo_id}/resolve/"
                if not self.path.startswith(prefix):
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.end_headers()
                    return
                rest = self.path[len(prefix):].split("?")[0]
                _revision, _, filename = rest.partition("/")
                if hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
                    self.send_response(401)
                    self.send_header("X-Error-Code", "GatedRepo")
                    self.send_header("X-Error-Message", "Access to model nvidia/NV-Generate-CT is restricted.")
                    self.end_headers()
                    return
                data = hub.files.get(filename)
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        return False
