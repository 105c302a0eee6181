"""Pushing pairs to Hydrus Network as potential duplicates, through its Client API.

Follows the Client API documentation (hydrusnetwork/hydrus, ``docs/developer_api.md``):
the access key goes in the ``Hydrus-Client-API-Access-Key`` header; errors come back with
a status code (400 bad parameter, 401/403/419 access, 503 busy) and a JSON body whose
``error`` text is shown to the user as it is.

The key is checked first (``/verify_access_key``, in every version of the API; an address
whose answer is not the API's, a 404 or not a JSON object, is a wrong ``--api-url``, said at
once rather than retried): it needs "search for and fetch files"
(to ask which files the client has) and "edit file relationships". Files are identified
by SHA-256, as Hydrus names them. ``/get_files/file_metadata`` answers for every hash the
client has ever seen, deleted and trashed files included, so a file counts as present only
if ``is_local`` and neither trashed nor deleted; the others are listed with the reason, never
guessed. Each distinct pair of distinct files is sent once, in batches, to
``/manage_file_relationships/set_file_relationships`` as relationship 0 ("potential
duplicates"); failed requests are retried with backoff, and after several batches fail in a
row the push stops. A refusal after some batches were sent (the key deleted meanwhile) stops
the push too, with the count of what was sent; a file that cannot be read any more is listed
with the reason and its pairs are not sent. A flood of pairs (see :func:`flood`) is refused
before the client is asked about any file, and when the file sizes alone show it, before any
file is read.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EnvironmentFault, MhcError, UsageError, printable
from .identity import open_regular

log = logging.getLogger(__name__)

POTENTIAL_DUPLICATES = 0  # relationship enum of set_file_relationships
KEY_HEADER = "Hydrus-Client-API-Access-Key"
PERMISSIONS = {3: "search for and fetch files", 8: "edit file relationships"}  # ClientAPI.py's names
METADATA_BATCH = 256  # "the client usually fetches file metadata in batches of 256"
# A push of more pairs than this per file, and more than FLOOD_FLOOR in all, is refused
# without --force. Copies give a few pairs per file: 0.4-3.3 on the labelled corpora (52 to
# 404 files) at their best thresholds, and 10 only where every file has 20 copies; on 404
# files 10 per file is passed from 16 bits of 64 for dhash_8 and 24 for phash_8, far past
# the best folders (2-10). Chance pairs between strangers grow with the square of the files:
# a typo (-t 30 for -t 3, 64 bits) gives 12-100 per file at 50-400 files and hundreds of
# thousands of pairs at a few thousand, which Hydrus keeps as potential duplicates until
# each is reviewed.
FLOOD_PER_FILE = 10
FLOOD_FLOOR = 1000


class Busy(EnvironmentFault):
    """503: the client is busy (or shutting down)."""


class Unreachable(EnvironmentFault):
    """No answer, or an answer cut off, after every retry."""


@dataclass
class PushResult:
    pairs: int = 0  # pairs found by mhc
    distinct: int = 0  # distinct pairs of distinct files (by SHA-256)
    collapsed: int = 0  # pairs dropped: identical copies (same SHA-256) or the same pair again
    sent: int = 0  # pairs accepted by the client (or that would be sent, in a dry run)
    not_sent: int = 0  # pairs in batches that failed, or were not tried after the push stopped
    unknown_files: dict[str, str] = field(default_factory=dict)  # path -> why the client lacks it
    failed_batches: int = 0
    stopped: str | None = None  # why the push stopped early
    refused: bool = False  # ... the client refused a batch (not busy or unreachable)
    dry_run: bool = False
    refusal: str | None = None  # a dry run's flood: why the push would be refused without --force


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open_regular(path) as f:  # (a file replaced by a FIFO since it was hashed is refused, not waited for)
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class HydrusClient:
    """Plain-HTTP(S) client for the few Client API calls mhc needs."""

    def __init__(self, api_url: str, api_key: str, *, retries: int = 3, backoff: float = 1.0, timeout: float = 30.0,
                 ca_cert: str | Path | None = None, insecure: bool = False):
        self.url = api_url.strip().rstrip("/")
        try:
            parts = urllib.parse.urlsplit(self.url)
            parts.port  # noqa: B018  (parsed on access: "http://h:x" raises here)
        except ValueError as e:  # "http://[::1": an unclosed IPv6 bracket, a port that is not a number
            raise UsageError(f"--api-url {api_url!r} is not a valid address ({e}), e.g. http://127.0.0.1:45869") from None
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"--api-url {api_url!r} is not an http:// or https:// address, e.g. http://127.0.0.1:45869")
        self.key = api_key.strip()  # $(cat keyfile) keeps the newline; a header cannot hold it
        if not self.key:
            raise UsageError("the Hydrus access key is empty; pass --api-key KEY or set HYDRUS_API_KEY")
        if any(ord(c) < 33 or ord(c) > 126 for c in self.key):
            raise UsageError("the Hydrus access key holds spaces or control characters; it is 64 hexadecimal "
                             "characters (services > review services > client api)")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", self.key):  # the client's access and session keys (the docs)
            got = f"{len(self.key)} characters" if len(self.key) != 64 else "64 characters, not all hexadecimal"
            raise UsageError(f"the Hydrus access key given is {got} (not shown: it is a secret); a key is 64 "
                             f"hexadecimal characters: copy it from services > review services > client api")
        if timeout <= 0:
            raise UsageError(f"--timeout must be a positive number of seconds, not {timeout}")
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.context = None
        if self.url.startswith("https://"):
            if insecure:
                self.context = ssl._create_unverified_context()  # the user's explicit choice (--insecure)
            else:
                try:
                    self.context = ssl.create_default_context(cafile=str(ca_cert) if ca_cert else None)
                except (OSError, ssl.SSLError) as e:
                    raise UsageError(f"--ca-cert {ca_cert}: cannot load it as a certificate ({e})") from None

    # -- requests -------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict | None = None, query: dict | None = None) -> dict:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {KEY_HEADER: self.key, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        last, dropped = "", False
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:
                    text = resp.read().decode("utf-8", "replace")
                    kind = resp.headers.get_content_type()
                try:
                    doc = json.loads(text) if text.strip() else {}
                except ValueError:
                    if kind != "application/json":  # a whole answer, and not JSON: another program answers
                        raise self._not_the_api(path, f"a {kind} page") from None
                    raise
                if not isinstance(doc, dict):  # every Client API answer is a JSON object
                    raise self._not_the_api(path, f"JSON that is not an object ({type(doc).__name__})")
                return doc
            except urllib.error.HTTPError as e:
                error = _error_text(e)
                if e.code == 503:
                    last, busy = f"the Hydrus client is busy (503: {error})", True
                elif e.code >= 500 or e.code == 429:
                    last, busy = f"the Hydrus client failed ({e.code}: {error})", False
                elif e.code == 404 and path == "/verify_access_key":  # in every version of the Client API
                    raise self._not_the_api(path, f"404 ({error})") from None
                else:
                    raise _refusal(e.code, error, method, path) from None
            except urllib.error.URLError as e:
                if isinstance(e.reason, ssl.SSLCertVerificationError):
                    raise UsageError(f"the Hydrus client's certificate is not trusted ({e.reason.verify_message}); "
                                     f"pass --ca-cert FILE with its certificate (client.crt in its db folder), or "
                                     f"--insecure to skip the check") from None
                if isinstance(e.reason, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(e.reason):
                    # an https:// address whose port answers plain http: no retry will change that
                    raise UsageError(f"{self.url} does not answer https ({e.reason.reason}); write http:// in "
                                     f"--api-url, or turn on https in the client's API settings") from None
                last, busy = f"cannot reach the Hydrus client at {self.url} ({e.reason})", None
                dropped = isinstance(e.reason, ConnectionResetError)
            except (TimeoutError, OSError) as e:  # socket timeouts and resets
                timed = isinstance(e, TimeoutError) or "timed out" in str(e)
                last = (f"the Hydrus client did not answer within {self.timeout:g} s (raise --timeout)" if timed
                        else f"the connection to the Hydrus client broke ({e})")
                busy, dropped = None, isinstance(e, ConnectionResetError)
            except (http.client.HTTPException, ValueError) as e:  # a reply cut off mid-body, or not JSON
                last, busy = f"the Hydrus client's reply was cut off or garbled ({type(e).__name__})", None
                dropped = isinstance(e, http.client.RemoteDisconnected)
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        message = f"{method} {path}: {last}, after {self.retries + 1} tries"
        if dropped and self.url.startswith("http://"):  # what an https port does with a plain request
            message += "; if the client's API uses https, write https:// in --api-url"
        raise Busy(message) if busy else Unreachable(message)

    def _not_the_api(self, path: str, answer: str) -> UsageError:
        """A wrong --api-url (a web page, the Hydrus server's port, another program): said at
        once, not retried as if the client were having trouble."""
        return UsageError(f"{self.url} is not a Hydrus client's API: it answered {path} with {answer}; check "
                          f"--api-url (the client's API address, http://127.0.0.1:45869 by default: see "
                          f"services > manage services > client api)")

    # -- the calls mhc makes ----------------------------------------------------------------
    def verify(self) -> dict:
        """Check the key and its permissions before any work; raises UsageError naming what is missing."""
        doc = self._request("GET", "/verify_access_key")
        if "basic_permissions" not in doc and "permits_everything" not in doc:
            raise self._not_the_api("/verify_access_key", "a JSON object without the permissions of a key")
        granted = doc.get("basic_permissions") or []
        if not isinstance(granted, list) or not all(type(p) is int for p in granted):  # (the API's: numbers)
            raise self._not_the_api("/verify_access_key", f"permissions that are not a list of numbers "
                                                          f"({printable(json.dumps(granted))[:40]})")
        if doc.get("permits_everything"):
            return doc
        missing = [name for num, name in PERMISSIONS.items() if num not in granted]
        if missing:
            # a client older than v513 (2023) has no duplicates API: no such permission to add
            old = " ('edit file relationships' came with Hydrus v513: update an older client)" if 8 not in granted else ""
            raise UsageError(f"the Hydrus access key {doc.get('name', '')!r} lacks the permission(s): "
                             f"{', '.join(missing)}; add them under services > review services > client api{old}")
        return doc

    def presence(self, hashes: list[str]) -> dict[str, str]:
        """Each hash -> "present", or why the client cannot take it: "never seen by the
        client", "in the client's trash", "deleted from the client"."""
        out: dict[str, str] = {}
        for s in range(0, len(hashes), METADATA_BATCH):
            chunk = hashes[s:s + METADATA_BATCH]
            doc = self._request("GET", "/get_files/file_metadata",
                                query={"hashes": json.dumps(chunk), "include_services_object": "false"})
            rows = doc.get("metadata", [])
            if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
                raise self._not_the_api("/get_files/file_metadata", f"'metadata' that is not a list of files "
                                                                    f"({printable(json.dumps(rows))[:40]})")
            for row in rows:
                h = row.get("hash")
                if not isinstance(h, str):
                    continue
                if row.get("file_id") is None:
                    out[h] = "never seen by the client"
                elif row.get("is_trashed"):
                    out[h] = "in the client's trash"
                elif row.get("is_deleted") or not row.get("is_local", False):
                    out[h] = "deleted from the client"
                else:
                    out[h] = "present"
        for h in hashes:
            out.setdefault(h, "never seen by the client")
        return out

    def set_potential_duplicates(self, pairs: list[tuple[str, str]]) -> None:
        rows = [{"hash_a": a, "hash_b": b, "relationship": POTENTIAL_DUPLICATES, "do_default_content_merge": False,
                 "delete_a": False, "delete_b": False} for a, b in pairs]
        self._request("POST", "/manage_file_relationships/set_file_relationships", body={"relationships": rows})


def _error_text(e: urllib.error.HTTPError) -> str:
    """The server's own words: the ``error`` of its JSON body, else the body's text."""
    try:
        raw = e.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        raw = ""
    try:
        doc = json.loads(raw)
        if isinstance(doc, dict) and doc.get("error"):
            return str(doc["error"]).strip().splitlines()[0]
    except ValueError:
        pass
    return raw.strip().splitlines()[0] if raw.strip() else (e.reason or "")


def _refusal(code: int, error: str, method: str, path: str) -> MhcError:
    if code == 400 and "Access-Key" in error:
        return UsageError(f"the Hydrus client cannot read the access key ({code}: {error}); it is 64 hexadecimal "
                          f"characters")
    if code in (401, 403, 419):
        return UsageError(f"the Hydrus client refused the access key ({code}: {error})")
    return UsageError(f"the Hydrus client refused {method} {path} ({code}: {error})")


def flood(pairs: int, files: int, at_least: bool = False) -> UsageError | None:
    """The refusal of a push of ``pairs`` distinct pairs among ``files`` files, if that is
    more than FLOOD_PER_FILE per file (and more than FLOOD_FLOOR): past where copies lie, a
    threshold links mostly strangers. None if the push looks like copies. ``at_least``: the
    count is a lower bound (see :func:`distinct_by_size`)."""
    if pairs <= FLOOD_FLOOR or pairs <= FLOOD_PER_FILE * files:
        return None
    return UsageError(f"{'at least ' if at_least else ''}{pairs:,} distinct pairs among {files:,} files "
                      f"({'over ' if at_least else ''}{pairs / max(files, 1):.0f} per file): "
                      f"copies give a few per file, so most of these would be strangers, each kept by Hydrus as a "
                      f"potential duplicate to review; choose a lower -t (see the run's threshold folders), check "
                      f"with --dry-run, or pass --force to send them")


def distinct_by_size(pairs: Iterable[tuple[str, str, int]]) -> int:
    """A lower bound of the distinct pairs of distinct files, from sizes alone: identical
    copies have one size, so each distinct pair of different sizes stands for at least one
    pair of different SHA-256s. Costs a stat per file, where the exact count reads every
    byte of every paired file (an hour on a large collection, before a flood was refused)."""
    size: dict[str, int | None] = {}

    def of(path: str) -> int | None:
        if path not in size:
            try:
                size[path] = os.stat(path).st_size
            except OSError:  # read (and reported) with the others below
                size[path] = None
        return size[path]

    seen = set()
    for a, b, _ in pairs:
        sa, sb = of(a), of(b)
        if sa is not None and sb is not None and sa != sb:
            seen.add((sa, sb) if sa < sb else (sb, sa))
    return len(seen)


def distinct_pairs(pairs: Iterable[tuple[str, str, int]], digest: dict[str, str]) -> tuple[list[tuple[str, str]], int]:
    """Each distinct pair of distinct SHA-256s once (in first-seen order), and how many
    pairs were dropped for being identical copies or repeats."""
    seen: set[tuple[str, str]] = set()
    out, dropped = [], 0
    for a, b, _ in pairs:
        ha, hb = digest[a], digest[b]
        key = (ha, hb) if ha < hb else (hb, ha)
        if ha == hb or key in seen:
            dropped += 1
            continue
        seen.add(key)
        out.append(key)
    return out, dropped


def push_pairs(pairs: list[tuple[str, str, int]], client: HydrusClient, *, batch: int = 100, dry_run: bool = False,
               stop_after: int = 3, progress: Callable[[int, int], None] | None = None, files: int | None = None,
               force: bool = False) -> PushResult:
    """Send ``(path_a, path_b, distance)`` pairs as potential duplicates (see the module).
    ``files``: how many files the pairs were found among; a flood (see :func:`flood`) is
    refused before the client is asked about any file, unless ``force`` (a dry run records
    the refusal in ``result.refusal`` instead)."""
    if batch < 1:
        raise UsageError(f"--batch must be 1 or more pairs per request, not {batch}")
    result = PushResult(pairs=len(pairs), dry_run=dry_run)
    if files is not None and not force and not dry_run and flood(len(pairs), files):  # (a dry run gives the count)
        too_many = flood(distinct_by_size(pairs), files, at_least=True)
        if too_many:
            raise too_many
    paths = sorted({p for a, b, _ in pairs for p in (a, b)})
    digest, unreadable = {}, {}
    for p in paths:
        try:
            digest[p] = sha256_of(p)
        except OSError as e:  # moved or deleted since it was hashed (or the cache said so)
            unreadable[p] = f"cannot be read now ({e.strerror or e})"
    if files is not None and not force:  # identical copies (one SHA-256) are not sent, so they do not count
        too_many = flood(len(distinct_pairs([(a, b, d) for a, b, d in pairs if a in digest and b in digest],
                                            digest)[0]), files)
        if too_many and not dry_run:
            raise too_many
        result.refusal = str(too_many) if too_many else None
    status = client.presence(sorted(set(digest.values())))
    result.unknown_files = {p: status[digest[p]] for p in digest if status[digest[p]] != "present"}
    result.unknown_files.update(unreadable)
    todo, result.collapsed = distinct_pairs(
        [(a, b, d) for a, b, d in pairs if a not in result.unknown_files and b not in result.unknown_files], digest)
    result.distinct = len(todo)
    in_a_row = 0
    for s in range(0, len(todo), batch):
        chunk = todo[s:s + batch]
        if result.stopped:
            result.not_sent += len(chunk)
            continue
        if not dry_run:
            try:
                client.set_potential_duplicates(chunk)
            except (Busy, Unreachable) as e:
                log.warning("%s; %d pairs not sent", e, len(chunk))
                result.failed_batches += 1
                result.not_sent += len(chunk)
                in_a_row += 1
                if in_a_row >= stop_after:
                    result.stopped = f"{in_a_row} batches in a row failed ({e})"
                continue
            except MhcError as e:  # a refusal after batches were sent (the key deleted meanwhile):
                if not result.sent:  # nothing sent yet: the refusal is the whole story
                    raise
                # say what was sent and stop; retrying would be refused again
                result.failed_batches += 1
                result.not_sent += len(chunk)
                result.stopped, result.refused = str(e), True
                continue
        in_a_row = 0
        result.sent += len(chunk)
        if progress:
            progress(min(len(todo), s + batch), len(todo))
    return result
