"""A strict fake of the three Hydrus Client API endpoints mhc uses.

It follows hydrusnetwork/hydrus' docs/developer_api.md and the client's request handling
(ClientLocalServerResources.py, HydrusServerResources.py): the access key header must be
hex (else 400 "Problem parsing Hydrus-Client-API-Access-Key!"), a missing key is 401, an
unknown key or a missing permission 403 with the client's texts, a busy client 503; every
error has the JSON body {"error", "exception_type", "status_code", "version",
"hydrus_version"}. ``file_metadata`` answers for every hash ever seen (deleted and trashed
ones included, with is_local/is_trashed/is_deleted) and {"file_id": null} for others.
"""
from __future__ import annotations

import json
import re
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

API_VERSION, HYDRUS_VERSION = 80, 650
PERMISSION_NAMES = {3: "search for and fetch files", 8: "edit file relationships"}
ENDPOINT_PERMISSION = {"/get_files/file_metadata": 3, "/manage_file_relationships/set_file_relationships": 8}
HEX64 = re.compile(r"^[0-9a-f]{64}$")


class State:
    def __init__(self):
        self.keys: dict[str, dict] = {}  # hex key -> {"name", "permits_everything", "basic_permissions"}
        self.files: dict[str, str] = {}  # sha256 -> "present" | "trashed" | "deleted"
        self.received: list[dict] = []
        self.requests: list[str] = []
        self.busy = 0  # answer this many requests with 503
        self.busy_on: set[str] | None = None  # only these paths are busy (None: all)
        self.cut = 0  # cut this many replies off mid-body
        self.delay = 0.0  # seconds before answering
        self.revoke_after: int | None = None  # the user deletes every key after this many accepted batches


class Handler(BaseHTTPRequestHandler):
    state: State

    def log_message(self, *a):
        pass

    # -- replies ---------------------------------------------------------------------------
    def _send(self, code: int, doc: dict | None) -> None:
        body = b"" if doc is None else json.dumps(doc).encode()
        if self.state.cut > 0 and body:
            self.state.cut -= 1
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) + 500))  # promises more than it sends
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Server", f"client api/{API_VERSION} ({HYDRUS_VERSION})")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, code: int, exception: str, text: str) -> None:
        self._send(code, {"error": text, "exception_type": exception, "status_code": code, "version": API_VERSION,
                          "hydrus_version": HYDRUS_VERSION})

    # -- access ----------------------------------------------------------------------------
    def _access(self, path: str) -> bool:
        raw = self.headers.get("Hydrus-Client-API-Access-Key")
        if raw is None:
            self._error(401, "MissingCredentialsException", "No access key or session key provided!")
            return False
        try:
            key = bytes.fromhex(raw).hex()
        except ValueError:
            self._error(400, "BadRequestException", "Problem parsing Hydrus-Client-API-Access-Key!")
            return False
        perms = self.state.keys.get(key)
        if perms is None:
            self._error(403, "InsufficientCredentialsException", "Did not find an entry for that access key!")
            return False
        need = ENDPOINT_PERMISSION.get(path)
        if need is not None and not perms["permits_everything"] and need not in perms["basic_permissions"]:
            self._error(403, "InsufficientCredentialsException",
                        f"You do not have permission to: {PERMISSION_NAMES[need]}")
            return False
        return True

    def _common(self) -> str | None:
        path = urlparse(self.path).path
        self.state.requests.append(f"{self.command} {path}")
        if self.state.delay:
            time.sleep(self.state.delay)
        if self.state.busy > 0 and (self.state.busy_on is None or path in self.state.busy_on):
            self.state.busy -= 1
            self._error(503, "ServerBusyException", "This server is busy, please try again later.")
            return None
        if not self._access(path):
            return None
        return path

    # -- endpoints --------------------------------------------------------------------------
    def do_GET(self):
        path = self._common()
        if path is None:
            return
        if path == "/verify_access_key":
            key = bytes.fromhex(self.headers["Hydrus-Client-API-Access-Key"]).hex()
            p = self.state.keys[key]
            self._send(200, {"name": p["name"], "permits_everything": p["permits_everything"],
                             "basic_permissions": sorted(p["basic_permissions"]), "human_description": p["name"],
                             "version": API_VERSION, "hydrus_version": HYDRUS_VERSION})
        elif path == "/get_files/file_metadata":
            q = parse_qs(urlparse(self.path).query)
            try:
                hashes = json.loads(q["hashes"][0])
                assert isinstance(hashes, list) and all(isinstance(h, str) and HEX64.match(h) for h in hashes)
            except (KeyError, ValueError, AssertionError):
                self._error(400, "BadRequestException", "Could not parse the 'hashes' parameter!")
                return
            rows = []
            for n, h in enumerate(hashes):
                state = self.state.files.get(h)
                if state is None:
                    rows.append({"file_id": None, "hash": h})
                    continue
                local = state in ("present", "trashed")
                rows.append({"file_id": 1000 + n, "hash": h, "size": 1, "mime": "image/jpeg", "is_local": local,
                             "is_trashed": state == "trashed", "is_deleted": state in ("trashed", "deleted"),
                             "file_services": {"current": {}, "deleted": {}}, "is_inbox": False})
            self._send(200, {"metadata": rows, "version": API_VERSION, "hydrus_version": HYDRUS_VERSION})
        else:
            self._error(404, "NotFoundException", "This resource does not exist!")

    def do_POST(self):
        if self.state.revoke_after == 0:  # deleted now: 403 "Did not find an entry for that access key!"
            self.state.keys.clear()
        path = self._common()
        if path is None:
            return
        if path != "/manage_file_relationships/set_file_relationships":
            self._error(404, "NotFoundException", "This resource does not exist!")
            return
        if self.headers.get("Content-Type") != "application/json":
            self._error(400, "BadRequestException", "Did not understand the Content-Type!")
            return
        try:
            doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            rels = doc["relationships"]
            for r in rels:
                assert HEX64.match(r["hash_a"]) and HEX64.match(r["hash_b"])
                assert r["relationship"] in (0, 1, 2, 3, 4) and isinstance(r["do_default_content_merge"], bool)
        except (KeyError, ValueError, AssertionError, TypeError):
            self._error(400, "BadRequestException", "Bad relationships parameter!")
            return
        self.state.received.extend(rels)
        if self.state.revoke_after is not None:
            self.state.revoke_after -= 1
        self._send(200, None)  # "200 with no content"


class FakeHydrus:
    """Runs the fake on 127.0.0.1 (https with ``cert``/``key`` files); ``.url``, ``.state``."""

    def __init__(self, cert: str | None = None, key: str | None = None):
        self.state = State()
        handler = type("H", (Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        scheme = "http"
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHydrus":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
