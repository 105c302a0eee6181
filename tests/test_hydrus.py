"""mhc hydrus push against a strict fake of the Hydrus Client API (tests/hydrus_fake.py)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hydrus_fake import FakeHydrus
from mhc import hash_folder

from conftest import photo, run_cli, save

KEY = "ab" * 32
SET = "POST /manage_file_relationships/set_file_relationships"


def sha(p) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.fixture
def photos(tmp_path) -> Path:
    inp = tmp_path / "photos"
    for g in range(4):
        base = photo(200 + g, (240, 180))
        save(base, inp / f"g{g}.jpg", quality=92)
        save(base.resize((160, 120)), inp / f"g{g} small.jpg")
        save(base, inp / f"g{g} recompressed.jpg", quality=50)
    shutil.copy(inp / "g0.jpg", inp / "g0 identical copy.jpg")  # the same bytes: one SHA-256
    return inp


@contextlib.contextmanager
def client_holding(folder: Path):
    """A fake client with the key KEY (both permissions) that holds every file of ``folder``."""
    with FakeHydrus() as h:
        h.state.keys[KEY] = {"name": "mhc", "permits_everything": False, "basic_permissions": [3, 8]}
        h.state.files = {sha(p): "present" for p in folder.iterdir()}
        yield h


@pytest.fixture
def hub(photos):
    with client_holding(photos) as h:
        yield h


def push(hub, photos, *args, key=KEY, env=None):
    cmd = ["hydrus", "push", "-a", "phash_8", "-t", "8", "-i", str(photos), "--api-url", hub.url, "--retries", "1",
           *args]
    if key is not None:
        cmd += ["--api-key", key]
    if env:
        import sys

        from conftest import ROOT

        return subprocess.run([sys.executable, str(ROOT / "cluster.py"), *cmd], capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "200", **env}, timeout=300)
    return run_cli(*cmd)


def expected(photos, skip=(), threshold=8) -> set[tuple[str, str]]:
    pairs = hash_folder(photos, ["phash_8"], workers=1).pairs("phash_8", threshold)
    out = set()
    for a, b, _ in pairs:
        ha, hb = sha(a), sha(b)
        if ha != hb and a not in skip and b not in skip:
            out.add(tuple(sorted((ha, hb))))
    return out


def received(hub) -> list[tuple[str, str]]:
    return [tuple(sorted((r["hash_a"], r["hash_b"]))) for r in hub.state.received]


def test_sends_each_distinct_pair_of_distinct_files_once(hub, photos):
    r = push(hub, photos, "--batch", "3")
    assert r.returncode == 0, r.stderr
    got = received(hub)
    assert len(got) == len(set(got)) and set(got) == expected(photos)
    assert all(a != b for a, b in got)  # identical copies never sent as a pair of themselves
    assert all(x["relationship"] == 0 and x["delete_a"] is False and x["delete_b"] is False
               for x in hub.state.received)
    assert "not sent twice: identical copies" in " ".join(r.stdout.split())


def test_an_output_folder_gives_the_files_the_cache_and_the_folder_to_open_first(hub, photos, tmp_path):
    """`mhc hydrus push -o OUT`: OUT's input, cache and --exclude patterns, and without -a/-t
    the folder OUT says to open first, named on the first line."""
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    assert run_cli("-i", str(photos), "-o", str(out), "-a", "phash_8", "--cache", str(cache), "--exclude",
                   "*small.jpg", "-q").returncode == 0
    doc = json.loads((out / "summary.json").read_text())
    t = (doc["recommended"] or {}).get("threshold", doc["algorithms"]["phash_8"]["suggested"]["threshold"])
    r = run_cli("hydrus", "push", "-o", str(out), "--api-url", hub.url, "--api-key", KEY)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"mhc hydrus push: phash_8 at {t} bits, the folder {out} ")
    small = {sha(p) for p in photos.glob("*small.jpg")}
    want = {(a, b) for a, b in expected(photos, threshold=t) if a not in small and b not in small}
    assert want and set(received(hub)) == want  # the recorded --exclude applies
    assert f"sent {len(want)} as potential duplicates" in " ".join(r.stdout.split())
    # made with --isometric: said when the push lacks it, and with it the mirrored copies go too
    assert run_cli("-i", str(photos), "-o", str(tmp_path / "iso"), "-a", "phash_8", "--cache", str(cache),
                   "--isometric", "-q").returncode == 0
    r = run_cli("hydrus", "push", "-o", str(tmp_path / "iso"), "--api-url", hub.url, "--api-key", KEY, "--dry-run")
    assert r.returncode == 0 and r.stdout.splitlines()[0].endswith(
        "(made with --isometric: add it for the same links)"), r.stdout
    r = run_cli("hydrus", "push", "-o", str(tmp_path), "--api-url", hub.url, "--api-key", KEY)  # not an output
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is not an mhc output folder" in r.stderr, r.stderr


def test_files_that_cannot_be_used_are_named_with_their_reason(hub, photos):
    """Not a pair silently missing: the file and why, as a run says it."""
    (photos / "notes.jpg").write_text("a shopping list")
    r = push(hub, photos)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    at = lines.index("1 file(s) could not be used; their pairs were not sent:")
    assert lines[at + 1] == f"  {photos / 'notes.jpg'}: not an image: the file holds text"
    assert set(received(hub)) == expected(photos)


def test_isometric_sends_mirrored_copies_too(tmp_path):
    """As `mhc pairs --isometric` lists them: a mirrored copy is a pair only with it."""
    from PIL import Image

    inp = tmp_path / "in"
    base = photo(23, (320, 240))
    save(base, inp / "a.png")
    save(base.transpose(Image.Transpose.FLIP_LEFT_RIGHT), inp / "a mirrored.png")
    save(photo(24, (320, 240)), inp / "other.png")
    with client_holding(inp) as h:
        plain = run_cli("hydrus", "push", "-a", "phash_8", "-t", "4", "-i", str(inp), "--api-url", h.url,
                        "--api-key", KEY)
        assert plain.returncode == 0 and received(h) == [], plain.stdout
        iso = run_cli("hydrus", "push", "-a", "phash_8", "-t", "4", "-i", str(inp), "--api-url", h.url,
                      "--api-key", KEY, "--isometric")
        assert iso.returncode == 0, iso.stderr
        assert received(h) == [tuple(sorted((sha(inp / "a.png"), sha(inp / "a mirrored.png"))))]


def test_excluded_files_are_not_sent(hub, photos):
    r = push(hub, photos, "--exclude", "*small.jpg")
    assert r.returncode == 0, r.stderr
    small = {sha(p) for p in photos.glob("*small.jpg")}
    assert received(hub) and not any(a in small or b in small for a, b in received(hub))
    assert set(received(hub)) == {(a, b) for a, b in expected(photos) if a not in small and b not in small}


def test_deleted_trashed_and_unseen_files_are_not_sent(hub, photos):
    states = {photos / "g1.jpg": "deleted", photos / "g2.jpg": "trashed"}
    for p, st in states.items():
        hub.state.files[sha(p)] = st
    del hub.state.files[sha(photos / "g3.jpg")]
    r = push(hub, photos)
    assert r.returncode == 0, r.stderr
    skip = {str(photos / n) for n in ("g1.jpg", "g2.jpg", "g3.jpg")}
    assert set(received(hub)) == expected(photos, skip)
    out = " ".join(r.stdout.split())
    for name, why in (("g1.jpg", "deleted from the client"), ("g2.jpg", "in the client's trash"),
                      ("g3.jpg", "never seen by the client")):
        assert f"{name}: {why}" in out


@pytest.mark.parametrize("batch", ["0", "-5"])
def test_a_batch_size_below_one_is_refused(hub, photos, batch):
    r = push(hub, photos, "--batch", batch)
    assert r.returncode == 2 and "--batch must be 1 or more" in r.stderr and "Traceback" not in r.stderr
    assert hub.state.requests == []


def test_a_reply_cut_off_mid_body_is_retried_then_reported(hub, photos):
    hub.state.cut = 1
    assert push(hub, photos).returncode == 0  # one cut-off reply: retried
    hub.state.cut = 100
    r = push(hub, photos)
    assert r.returncode == 3 and "cut off" in r.stderr and "Traceback" not in r.stderr


def test_a_key_ending_in_a_newline_works(hub, photos):
    r = push(hub, photos, key=None, env={"HYDRUS_API_KEY": KEY + "\n"})
    assert r.returncode == 0, r.stderr
    assert received(hub)


@pytest.mark.parametrize("dry", [[], ["--dry-run"]])
def test_a_key_without_the_permissions_is_refused_before_hashing(hub, photos, dry):
    hub.state.keys[KEY]["basic_permissions"] = [3]
    r = push(hub, photos, *dry)
    said = " ".join(r.stderr.split())
    assert r.returncode == 2 and "lacks the permission(s): edit file relationships" in said
    assert "('edit file relationships' came with Hydrus v513: update an older client)" in said  # none to add there
    assert "Hashing" not in r.stderr and "Traceback" not in r.stderr
    assert hub.state.requests == ["GET /verify_access_key"]


def test_the_servers_own_words_are_shown(hub, photos):
    # (a key that is not 64 hex characters, the client's "Problem parsing" 400, is refused
    # before it is sent: test_typos_are_said_before_the_client_is_asked)
    r = push(hub, photos, key="cd" * 32)
    assert r.returncode == 2 and "Did not find an entry for that access key!" in r.stderr


def test_a_key_deleted_during_the_push_says_what_was_sent(hub, photos):
    """The key deleted in the client after two batches: each later batch would be refused
    (403) again, so the push stops at the first refusal and says what was sent (exit 1); it
    used to end in the refusal alone (exit 2), the batches already sent unmentioned."""
    hub.state.revoke_after = 2
    r = push(hub, photos, "--batch", "1")
    text = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 1, text
    total = len(expected(photos))
    assert "sent 2 as potential duplicates" in text and f"{total - 2} pair(s) not sent" in text, text
    assert "Did not find an entry for that access key!" in text and "fix that and run again" in text
    assert hub.state.requests.count(SET) == 3 and len(received(hub)) == 2  # no retry of a refusal
    assert "Traceback" not in text


def test_a_refusal_of_the_first_batch_is_the_whole_story(hub, photos):
    hub.state.revoke_after = 0  # deleted between the key check and the first batch
    r = push(hub, photos)
    assert r.returncode == 2 and "refused the access key (403: Did not find an entry" in r.stderr, r.stderr
    assert "not sent" not in r.stdout and "Traceback" not in r.stderr and received(hub) == []


@pytest.mark.parametrize("change, said", [("deleted", "No such file or directory"),
                                          ("a FIFO", "not a regular file (a FIFO)")])  # reading it would wait
def test_a_file_gone_before_the_push_is_listed_not_a_traceback(hub, photos, change, said):
    from mhc import hash_folder

    hash_folder(photos, ["phash_8"], workers=1)  # hashed (and cached) while it was there
    gone = photos / "g1 small.jpg"
    gone.unlink()
    if change == "a FIFO":
        os.mkfifo(gone)
    pairs = [(str(gone), str(photos / "g1.jpg"), 0), (str(photos / "g0.jpg"), str(photos / "g0 small.jpg"), 2)]
    from mhc.hydrus import HydrusClient, push_pairs

    result = push_pairs(pairs, HydrusClient(hub.url, KEY, retries=0))
    assert result.unknown_files == {str(gone): f"cannot be read now ({said})"}
    assert result.sent == 1 and len(received(hub)) == 1


def test_a_busy_client_is_called_busy_and_the_push_stops(hub, photos):
    hub.state.busy, hub.state.busy_on = 1000, {"/manage_file_relationships/set_file_relationships"}
    r = push(hub, photos, "--batch", "1")
    assert r.returncode == 1, r.stderr
    text = " ".join((r.stdout + r.stderr).split())
    assert "busy" in text and "is the Hydrus client running" not in text
    assert "3 batches in a row failed" in text and "not sent" in text
    assert hub.state.requests.count(SET) == 3 * 2  # 3 batches, 2 tries each; not every remaining batch


def test_the_timeout_is_the_users(hub, photos):
    hub.state.delay = 1.0
    r = push(hub, photos, "--timeout", "0.3", "--retries", "0")
    assert r.returncode == 3 and "did not answer within 0.3 s (raise --timeout)" in r.stderr
    assert push(hub, photos, "--timeout", "5").returncode == 0


def test_https_with_a_self_signed_certificate(photos, tmp_path):
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=hydrus",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with FakeHydrus(str(cert), str(key)) as hub:
        hub.state.keys[KEY] = {"name": "mhc", "permits_everything": True, "basic_permissions": []}
        hub.state.files = {sha(p): "present" for p in photos.iterdir()}
        r = push(hub, photos)
        assert r.returncode == 2 and "--ca-cert" in r.stderr and "Traceback" not in r.stderr
        assert push(hub, photos, "--ca-cert", str(cert)).returncode == 0
        assert push(hub, photos, "--insecure").returncode == 0
        assert received(hub)


def test_an_unreachable_client_and_a_bad_address_are_one_line(photos):
    r = run_cli("hydrus", "push", "-a", "phash_8", "-t", "8", "-i", str(photos), "--api-url", "http://127.0.0.1:9",
                "--api-key", KEY, "--retries", "0")
    assert r.returncode == 3 and "cannot reach the Hydrus client" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("hydrus", "push", "-a", "phash_8", "-t", "8", "-i", str(photos), "--api-url", "127.0.0.1:45869",
                "--api-key", KEY)
    assert r.returncode == 2 and "is not an http:// or https:// address" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--api-url", "http://[::1"], "is not a valid address (Invalid IPv6 URL)"),
    (["--api-url", "http://hydrus:port"], "is not a valid address"),
    (["-a", "phash_8", "-t", "99"], "-t 99: phash_8 has 64 bits"),
    (["-a", "phash_8", "-t", "0:8:1"], "is not one threshold"),
    (["-a", "nope_8"], "unknown algorithm 'nope'"),
    (["-i", "/nonexistent/photos"], "input folder /nonexistent/photos does not exist"),
    # a key cut short in the copy, or another secret pasted (the key itself is never printed)
    (["--api-key", KEY[:40]], "the Hydrus access key given is 40 characters (not shown: it is a secret)"),
    (["--api-key", "hunter2" * 9 + "x"], "64 characters, not all hexadecimal (not shown: it is a secret)"),
])
def test_typos_are_said_before_the_client_is_asked(photos, args, message):
    # the client at port 9 is unreachable: these lines prove nothing was sent first
    base = {"-i": str(photos), "-a": "phash_8", "-t": "8", "--api-url": "http://127.0.0.1:9", "--api-key": KEY}
    base.update(dict(zip(args[::2], args[1::2])))
    r = run_cli("hydrus", "push", *[x for kv in base.items() for x in kv], "--retries", "0")
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1 and base["--api-key"] not in r.stderr


def test_push_help_documents_the_options():
    out = " ".join(run_cli("hydrus", "push", "--help").stdout.replace("│", " ").split())
    for opt in ("--timeout", "--ca-cert", "--insecure", "--retries", "--batch", "client.crt"):
        assert opt in out


class _Other:
    """A real HTTP server of another kind (python's http.server), for a wrong --api-url: it
    answers every request with one fixed reply, or serves an empty folder (404 pages)."""

    def __init__(self, reply: tuple[int, str, bytes] | None = None, tls: tuple[Path, Path] | None = None,
                 folder: Path | None = None):
        import functools
        import http.server
        import ssl
        import threading

        seen = self.requests = []

        class Fixed(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(self.path)
                code, kind, body = reply[self.path.partition("?")[0]] if isinstance(reply, dict) else reply
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class Files(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                seen.append(self.path)
                super().do_GET()

            def log_message(self, *a):
                pass

        handler = functools.partial(Files, directory=str(folder)) if folder else Fixed
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _push_to(url, photos, *args):
    return run_cli("hydrus", "push", "-a", "phash_8", "-t", "8", "-i", str(photos), "--api-url", url, "--api-key", KEY,
                   "--retries", "2", *args)


@pytest.mark.parametrize("metadata", [b'{"metadata": {"hash": "00"}}', b'{"metadata": [5]}', b'{"metadata": null}'])
def test_file_metadata_of_another_shape_is_said_not_crashed_on(photos, tmp_path, metadata):
    """/get_files/file_metadata answers a list of file objects; anything else ended the
    push "unexpectedly" (exit 70: AttributeError)."""
    key = (200, "application/json", b'{"permits_everything": true, "basic_permissions": [], "name": "k"}')
    with _Other({"/verify_access_key": key, "/get_files/file_metadata": (200, "application/json", metadata)}) as other:
        r = _push_to(f"http://127.0.0.1:{other.port}", photos)
    text = " ".join(r.stderr.split())
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "answered /get_files/file_metadata with 'metadata' that is not a list of files" in text, text
    assert [p.partition("?")[0] for p in other.requests] == ["/verify_access_key", "/get_files/file_metadata"]


@pytest.mark.parametrize("what, reply, said", [
    ("a web server's 404 page", None, "with 404"),
    ("a router's login page", (200, "text/html", b"<html><body>Login</body></html>"), "with a text/html page"),
    ("a JSON list", (200, "application/json", b"[1, 2]"), "JSON that is not an object (list)"),
    ("another program's JSON", (200, "application/json", b'{"status": "ok"}'), "without the permissions of a key"),
    # the documented answer's fields, of other types (exit 70: "'int' object is not iterable")
    ("permissions that are not a list", (200, "application/json", b'{"basic_permissions": 5}'),
     "permissions that are not a list of numbers (5)"),
    ("permissions that are not numbers", (200, "application/json", b'{"basic_permissions": [{"id": 3}]}'),
     'permissions that are not a list of numbers ([{"id": 3}])'),
])
def test_an_address_that_is_not_the_client_api_is_said_at_once(photos, tmp_path, what, reply, said):
    empty = tmp_path / "site"
    empty.mkdir()
    with _Other(reply, folder=None if reply else empty) as other:
        r = _push_to(f"http://127.0.0.1:{other.port}", photos)
        text = " ".join(r.stderr.split())
        assert r.returncode == 2, (what, r.stderr)
        assert f"http://127.0.0.1:{other.port} is not a Hydrus client's API" in text and said in text, text
        assert "check --api-url" in text and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in text
        assert other.requests == ["/verify_access_key"]  # not retried, and nothing hashed or sent after it


def test_http_and_https_mixed_up_are_named(photos, tmp_path):
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=hydrus",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    with _Other((200, "application/json", b"{}")) as plain:  # https:// to a plain http port
        r = _push_to(f"https://127.0.0.1:{plain.port}", photos)
        assert r.returncode == 2 and "does not answer https" in r.stderr and "write http://" in r.stderr, r.stderr
        assert plain.requests == []  # the handshake failed: no request was read
    with _Other((200, "application/json", b"{}"), tls=(cert, key)) as secure:  # http:// to an https port
        r = _push_to(f"http://127.0.0.1:{secure.port}", photos, "--retries", "0")
        text = " ".join(r.stderr.split())
        assert r.returncode == 3 and "write https:// in --api-url" in text and "Traceback" not in text, text


@pytest.fixture
def crowd(tmp_path) -> Path:
    """48 distinct small photos: at 64 of 64 bits every pair is within the threshold, 1,128
    pairs (23.5 per file), the shape of a mistyped threshold far past where copies lie."""
    inp = tmp_path / "crowd"
    for i in range(48):
        save(photo(900 + i, (64, 48)), inp / f"p{i:02}.jpg")
    return inp


@pytest.fixture
def crowd_hub(crowd):
    with client_holding(crowd) as h:
        yield h


def test_a_flood_of_chance_pairs_is_refused_before_anything_is_sent(crowd_hub, crowd):
    """-t 64 of 64 bits (a typo for 6, say) used to send all 1,128 pairs into the client,
    where each stays a potential duplicate until reviewed by hand. It is refused, in one
    line naming the count and --force, before the client is asked about any file."""
    r = push(crowd_hub, crowd, "-t", "64")
    text = " ".join(r.stderr.split())
    assert r.returncode == 2, text
    assert "1,128 distinct pairs among 48 files (24 per file)" in text and "--force" in text
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert received(crowd_hub) == [] and crowd_hub.state.requests == ["GET /verify_access_key"]


def test_a_dry_run_says_a_flood_would_be_refused_and_force_sends_it(crowd_hub, crowd):
    r = push(crowd_hub, crowd, "-t", "64", "--dry-run")
    text = " ".join(r.stdout.split())
    assert r.returncode == 0, r.stderr
    assert "would send 1128" in text and "without --dry-run this push would be refused: 1,128 distinct pairs" in text
    assert received(crowd_hub) == []
    r = push(crowd_hub, crowd, "-t", "64", "--force")
    assert r.returncode == 0, r.stderr
    assert len(set(received(crowd_hub))) == 1128 and "sent 1128 as potential duplicates" in " ".join(r.stdout.split())


def test_under_the_floor_a_push_is_not_refused(crowd_hub, crowd):
    """Below 1,000 pairs nothing is refused, whatever the share per file: 44 files, 946 pairs."""
    for p in sorted(crowd.iterdir())[:4]:
        p.unlink()
    r = push(crowd_hub, crowd, "-t", "64")
    assert r.returncode == 0, r.stderr
    assert len(set(received(crowd_hub))) == 946


def test_identical_copies_do_not_count_towards_a_flood(tmp_path):
    """48 byte-identical copies are 1,128 pairs within any threshold, but one SHA-256: none
    is sent, so none counts (the raw count refused them)."""
    inp = tmp_path / "stickers"
    first = save(photo(3, (64, 48)), inp / "s00.jpg")
    for i in range(1, 48):
        shutil.copy(first, inp / f"s{i:02}.jpg")
    with client_holding(inp) as h:
        r = push(h, inp, "-t", "64")
        assert r.returncode == 0, r.stderr
        assert received(h) == [] and "1128 pair(s) not sent twice" in " ".join(r.stdout.split())


def test_a_flood_is_refused_from_the_sizes_before_any_file_is_read(tmp_path, monkeypatch):
    """The exact count of distinct pairs reads every paired file whole (SHA-256): on a large
    collection an hour, only to refuse. Files of different sizes cannot be identical, so
    when the sizes alone show a flood it is refused before one byte is read."""
    import mhc.hydrus as hydrus

    inp = tmp_path / "crowd"
    inp.mkdir()
    for i in range(60):  # a comment 100 bytes longer each: 60 sizes of file
        photo(900 + i, (64, 48)).save(inp / f"p{i:02}.jpg", quality=90, comment=b"x" * (1 + 100 * i))
    assert len({p.stat().st_size for p in inp.iterdir()}) == 60
    collection = hash_folder(inp, ["phash_8"], cache=None)
    pairs = collection.pairs("phash_8", 64)
    assert len(pairs) == 1770

    def read(path):
        raise AssertionError(f"{path} was read")
    monkeypatch.setattr(hydrus, "sha256_of", read)
    client = hydrus.HydrusClient("http://127.0.0.1:9", "0" * 64, retries=0)  # never asked: nothing listens there
    with pytest.raises(hydrus.UsageError, match=r"^at least 1,770 distinct pairs among 60 files \(over 30 per file\)"):
        hydrus.push_pairs(pairs, client, files=60)
    # the bound is a bound: 40 byte-identical copies of one file add no distinct pair
    first = inp / "p00.jpg"
    for i in range(40):
        shutil.copy(first, inp / f"same {i}.jpg")
    grown = hash_folder(inp, ["phash_8"], cache=None)
    assert hydrus.distinct_by_size(grown.pairs("phash_8", 64)) == 1770
