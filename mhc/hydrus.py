"""Pushing pairs to Hydrus Network as potential duplicates, through its Client API.

Files are identified by SHA-256, the way Hydrus names them. Hashes the client does not
know are listed, never guessed; the rest are sent in batches to
``/manage_file_relationships/set_file_relationships`` with relationship 0 ("potential
duplicates"), retrying failed requests. The API key needs the permissions "Search for and
fetch files" (to ask which files the client knows) and "Manage file relationships".
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import MhcError

log = logging.getLogger(__name__)

POTENTIAL_DUPLICATES = 0  # Hydrus' duplicate status for "potential duplicates"
KEY_HEADER = "Hydrus-Client-API-Access-Key"


@dataclass
class PushResult:
    pairs: int = 0  # pairs found by mhc
    sent: int = 0  # pairs accepted by the client
    unknown_files: list[str] = field(default_factory=list)  # paths the client does not know
    failed_batches: int = 0
    dry_run: bool = False


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class HydrusClient:
    """Plain-HTTP client for the few Client API calls mhc needs."""

    def __init__(self, api_url: str, api_key: str, *, retries: int = 3, backoff: float = 1.0, timeout: float = 30.0):
        self.url = api_url.rstrip("/")
        self.key = api_key
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout

    def _request(self, method: str, path: str, body: dict | None = None, query: dict | None = None) -> dict:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {KEY_HEADER: self.key}
        if data is not None:
            headers["Content-Type"] = "application/json"
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    text = resp.read().decode() or "{}"
                    return json.loads(text) if text.strip().startswith(("{", "[")) else {}
            except urllib.error.HTTPError as e:
                if e.code in (401, 403):
                    raise MhcError(f"the Hydrus client refused the API key ({e.code}): give it the permissions "
                                   f"'search for and fetch files' and 'manage file relationships'") from None
                if e.code < 500 and e.code != 429:
                    raise MhcError(f"Hydrus {method} {path} failed: {e.code} {e.reason}") from None
                last = e
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = e
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        raise ConnectionError(f"Hydrus {method} {path} failed after {self.retries + 1} tries: {last}")

    def known(self, hashes: list[str]) -> set[str]:
        """The subset of ``hashes`` the client has (metadata rows with a file id)."""
        found: set[str] = set()
        for s in range(0, len(hashes), 256):
            chunk = hashes[s:s + 256]
            doc = self._request("GET", "/get_files/file_metadata",
                                query={"hashes": json.dumps(chunk), "only_return_identifiers": "true"})
            for row in doc.get("metadata", []):
                if row.get("file_id") is not None and row.get("hash"):
                    found.add(row["hash"])
        return found

    def set_potential_duplicates(self, pairs: list[tuple[str, str]]) -> None:
        rows = [{"hash_a": a, "hash_b": b, "relationship": POTENTIAL_DUPLICATES, "do_default_content_merge": False,
                 "delete_a": False, "delete_b": False} for a, b in pairs]
        self._request("POST", "/manage_file_relationships/set_file_relationships", body={"relationships": rows})


def push_pairs(pairs: list[tuple[str, str, int]], client: HydrusClient, *, batch: int = 100, dry_run: bool = False,
               progress: Callable[[str, int, int], None] | None = None) -> PushResult:
    """Send ``(path_a, path_b, distance)`` pairs as potential duplicates."""
    result = PushResult(pairs=len(pairs), dry_run=dry_run)
    paths = sorted({p for a, b, _ in pairs for p in (a, b)})
    digest = {p: sha256_of(p) for p in paths}
    known = client.known(sorted(set(digest.values())))
    result.unknown_files = [p for p in paths if digest[p] not in known]
    todo = [(digest[a], digest[b]) for a, b, _ in pairs if digest[a] in known and digest[b] in known]
    for s in range(0, len(todo), batch):
        chunk = todo[s:s + batch]
        if not dry_run:
            try:
                client.set_potential_duplicates(chunk)
            except ConnectionError as e:
                log.warning("%s; %d pairs not sent", e, len(chunk))
                result.failed_batches += 1
                continue
        result.sent += len(chunk)
        if progress:
            progress("hydrus", min(len(todo), s + batch), len(todo))
    return result
