"""A small in-memory stand-in for the Hugging Face Hub on 127.0.0.1, enough for huggingface_hub to
create a repo, commit files (regular uploads) and download them again (HF_ENDPOINT=<server.url>)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import yaml


class HubState:
    def __init__(self):
        self.repos: dict[str, dict] = {}  # repo_id -> {"files": {path: bytes}, "commit": sha}
        self.log: list[str] = []
        self.lock = threading.Lock()


def _handler(state: HubState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean; requests are in state.log
            pass

        def _send(self, status: int, body: bytes | dict | None = None, headers: dict | None = None, head: bool = False):
            payload = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
            self.send_response(status)
            content_type = "application/json" if isinstance(body, dict) else "application/octet-stream"
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(payload)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _url(self, repo_id: str) -> str:
            host, port = self.server.server_address[:2]
            return f"http://{host}:{port}/{repo_id}"

        def do_POST(self):
            path = urlparse(self.path).path
            state.log.append(f"POST {path}")
            body = self._body()
            if path == "/api/repos/create":
                request = json.loads(body)
                repo_id = f"{request.get('organization') or 'user'}/{request['name']}"
                with state.lock:
                    if repo_id in state.repos:
                        return self._send(
                            409, {"error": "You already created this model repo", "url": self._url(repo_id)}
                        )
                    state.repos[repo_id] = {"files": {}, "commit": "0" * 40}
                return self._send(200, {"url": self._url(repo_id), "name": repo_id})
            if path == "/api/validate-yaml":  # the README's front matter must be a YAML mapping
                content = json.loads(body)["content"]
                match = re.match(r"^---\n(.*?)\n---\n", content, flags=re.DOTALL)
                try:
                    metadata = yaml.safe_load(match[1]) if match else None
                    if not isinstance(metadata, dict):
                        raise ValueError("no YAML front matter")
                except Exception as error:
                    return self._send(400, {"errors": [{"message": str(error)}], "warnings": []})
                return self._send(200, {"errors": [], "warnings": []})
            match = re.fullmatch(r"/api/models/(.+?)/preupload/([^/]+)", path)
            if match:
                files = json.loads(body)["files"]
                upload = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                return self._send(200, {"files": upload, "commitOid": state.repos[match[1]]["commit"]})
            match = re.fullmatch(r"/api/models/(.+?)/commit/([^/]+)", path)
            if match:
                repo = state.repos.get(match[1])
                if repo is None:
                    return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        value = item["value"]
                        content = value["content"]
                        data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                        repo["files"][value["path"]] = data
                    elif item["key"] == "deletedFile":
                        repo["files"].pop(item["value"]["path"], None)
                    elif item["key"] not in ("header",):
                        return self._send(400, {"error": f"unsupported commit item {item['key']}"})
                digest = hashlib.sha1(
                    repr(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in repo["files"].items())).encode()
                )
                repo["commit"] = digest.hexdigest()
                return self._send(
                    200, {"commitUrl": f"{self._url(match[1])}/commit/{repo['commit']}", "commitOid": repo["commit"]}
                )
            return self._send(404, {"error": f"not implemented: POST {path}"})

        def _get(self, head: bool):
            path = unquote(urlparse(self.path).path)
            state.log.append(f"{'HEAD' if head else 'GET'} {path}")
            match = re.fullmatch(r"/(?:models/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if match:
                repo = state.repos.get(match[1])
                if repo is None:
                    return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}, head)
                data = repo["files"].get(match[3])
                if data is None:
                    headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo["commit"]}
                    return self._send(404, {"error": "Entry not found"}, headers, head)
                headers = {"ETag": f'"{hashlib.sha1(data).hexdigest()}"', "X-Repo-Commit": repo["commit"]}
                return self._send(200, data, headers, head)
            match = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
            if match and match[1] in state.repos:
                repo = state.repos[match[1]]
                siblings = [{"rfilename": name} for name in sorted(repo["files"])]
                return self._send(200, {"id": match[1], "sha": repo["commit"], "siblings": siblings}, head=head)
            if path == "/api/whoami-v2":
                return self._send(200, {"name": "user", "type": "user", "auth": {}}, head=head)
            return self._send(404, {"error": f"not implemented: {path}"}, {"X-Error-Code": "RepoNotFound"}, head)

        def do_GET(self):
            self._get(head=False)

        def do_HEAD(self):
            self._get(head=True)

    return Handler


class HubServer:
    """``with HubServer() as hub: ... hub.url ...``; files live in ``hub.state.repos``."""

    def __init__(self):
        self.state = HubState()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
