"""A local stand-in for the Hugging Face Hub's file endpoint, on 127.0.0.1 only.

huggingface.co cannot be reached from the tests, so the real ``huggingface_hub``
client talks to this instead (``endpoint=hub.endpoint``). It answers as the Hub
does for large (LFS) files:

* ``HEAD /{repo}/resolve/{revision}/{path}`` -> ``302`` with ``X-Repo-Commit``,
  ``X-Linked-Etag`` (the file's sha256), ``X-Linked-Size`` and a ``Location`` on a
  second server (the "CDN": another origin, so the client drops the token);
  ``cdn=False`` answers ``200`` with ``ETag`` and ``Content-Length`` instead.
  No ``X-Xet-Hash`` header, so the client uses plain HTTP, never Xet.
* ``GET`` on the CDN serves the bytes, honouring ``Range: bytes=N-`` (206).
* Gating (``token`` set), with the Hub's status codes and headers: no token ->
  401 ``X-Error-Code: GatedRepo``; a wrong token -> 401 ``X-Error-Message:
  Invalid credentials in Authorization header``; the right token of an account
  without access (``granted=False``) -> 403 ``GatedRepo``.
* ``drop_after=N`` makes the first ``drop_times`` GETs stop at byte N and close
  the connection (an interrupted download).
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(
        self,
        repo_id: str,
        files: dict,
        token: str | None = None,
        granted: bool = True,
        cdn: bool = True,
        drop_after: int | None = None,
        drop_times: int = 10**9,
    ):
        self.repo_id, self.files, self.token, self.granted, self.cdn = repo_id, files, token, granted, cdn
        self.drop_after, self.drop_times = drop_after, drop_times
        self.blobs = {hashlib.sha256(d).hexdigest(): d for d in files.values()}
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self.hub = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("hub"))
        self.cdn_server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("cdn"))
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self.hub, self.cdn_server)]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.hub.server_address[1]}"

    @property
    def cdn_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.cdn_server.server_address[1]}"

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        for s in (self.hub, self.cdn_server):
            s.shutdown()
            s.server_close()
        return False

    # --- the two servers ------------------------------------------------------------

    def _handler(self, role: str):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _error(self, status: int, code: str | None, message: str):
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                if code == "EntryNotFound":  # the repository exists: the Hub names its commit
                    self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _record(self):
                with fake._lock:
                    fake.requests.append(
                        {
                            "server": role,
                            "method": self.command,
                            "path": self.path,
                            "authorization": self.headers.get("Authorization"),
                            "range": self.headers.get("Range"),
                        }
                    )

            def _hub(self, body: bool):
                prefix = f"/{fake.repo_id}/resolve/"
                if not self.path.startswith(prefix):
                    return self._error(404, "RepoNotFound", "Repository not found")
                _revision, _, filename = self.path[len(prefix) :].split("?")[0].partition("/")
                if fake.token:
                    auth = self.headers.get("Authorization")
                    if auth is None:
                        return self._error(
                            401,
                            "GatedRepo",
                            f"Access to model {fake.repo_id} is restricted. You must "
                            "have access to it and be authenticated to access it. Please log in.",
                        )
                    if auth != f"Bearer {fake.token}":
                        return self._error(401, None, "Invalid credentials in Authorization header")
                    if not fake.granted:
                        return self._error(
                            403,
                            "GatedRepo",
                            f"Access to model {fake.repo_id} is restricted and you "
                            "are not in the authorized list. Visit https://huggingface.co/"
                            f"{fake.repo_id} to ask for access.",
                        )
                data = fake.files.get(filename)
                if data is None:
                    return self._error(404, "EntryNotFound", f'{filename} does not exist on "main"')
                sha = hashlib.sha256(data).hexdigest()
                if fake.cdn:
                    self.send_response(302)
                    self.send_header("Location", f"{fake.cdn_endpoint}/blobs/{sha}?X-Amz-Signature=fake")
                    self.send_header("X-Linked-Etag", f'"{sha}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                    self.send_header("ETag", '"redirect-etag"')
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._serve(data, sha, body)

            def _serve(self, data: bytes, sha: str, body: bool):
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[len("bytes=") : -1])
                stop = len(data)
                with fake._lock:
                    drop = body and fake.drop_after is not None and fake.drop_times > 0
                    if drop:
                        fake.drop_times -= 1
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", str(stop - start))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if not body:
                    return
                if drop:  # send up to drop_after, then hang up mid-body
                    self.wfile.write(data[start : max(start, fake.drop_after)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

            def _cdn(self, body: bool):
                sha = self.path.split("?")[0].rpartition("/")[2]
                data = fake.blobs.get(sha)
                if data is None:
                    return self._error(404, None, "no such blob")
                self._serve(data, sha, body)

            def do_HEAD(self):
                self._record()
                (self._hub if role == "hub" else self._cdn)(body=False)

            def do_GET(self):
                self._record()
                (self._hub if role == "hub" else self._cdn)(body=True)

        return Handler
