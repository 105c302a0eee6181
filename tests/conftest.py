"""Fixtures: small, real media files generated per test session (no mocks, no downloads)."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

# A shell that starts the suite in the background (`make test &`, nohup, some CI runners)
# hands it SIGINT ignored, and an ignored signal stays ignored across exec: every mhc the
# tests start would then shrug off the Ctrl-C the interrupt tests send. Handled here, it is
# reset to the default in each child, as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def user_cache_folder(tmp_path_factory):
    """mhc's per-user cache folder ($XDG_CACHE_HOME/mhc) in a temporary folder, for this
    process and the mhc processes tests start, so tests never touch a real one."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder / "mhc"
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A photo-like RGB image: smooth random structure plus fine texture.

    Different seeds give unrelated pictures (phash_8 distances around 32 bits), the same
    seed the same picture, so tests can build near-duplicates by editing one.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = Image.fromarray((rng.random((5, 7, 3)) * 255).astype(np.uint8), "RGB").resize((w, h), Image.BICUBIC)
    mid = Image.fromarray((rng.random((20, 28, 3)) * 255).astype(np.uint8), "RGB").resize((w, h), Image.BICUBIC)
    a = np.asarray(coarse, dtype=np.float32) * 0.7 + np.asarray(mid, dtype=np.float32) * 0.3
    a += rng.normal(0, 6, a.shape)  # sensor-like noise
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    for _ in range(3):  # a few hard edges, like objects in a scene
        x0, y0 = int(rng.integers(0, max(1, w - 40))), int(rng.integers(0, max(1, h - 40)))
        d.rectangle([x0, y0, x0 + int(rng.integers(1, max(2, w // 2))), y0 + int(rng.integers(1, max(2, h // 2)))],
                    fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return im


def save(im: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """Every path under root -> content digest (files), link target (links) or 'dir'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath, d)
            out[str(p.relative_to(root))] = "link:" + os.readlink(p) if p.is_symlink() else "dir"
        for f in filenames:
            p = Path(dirpath, f)
            if p.is_symlink():
                out[str(p.relative_to(root))] = "link:" + os.readlink(p)
            else:
                st = p.lstat()
                out[str(p.relative_to(root))] = (
                    hashlib.sha256(p.read_bytes()).hexdigest() + f":{st.st_mode:o}:{st.st_mtime_ns}"
                )
    return out


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A small photo collection: 4 pictures with near-duplicates, 3 unrelated ones,
    same-named files in two folders, a corrupt file, and a non-image file."""
    root = tmp_path / "photos"
    for g in range(4):
        base = photo(100 + g)
        save(base, root / f"group{g}" / "original.jpg", quality=92)
        save(base.resize((160, 120), Image.LANCZOS), root / f"group{g}" / "small.jpg", quality=90)
        save(base, root / "edits" / f"g{g} recompressed.jpg", quality=40)
        save(ImageEnhance.Brightness(base).enhance(1.15), root / "edits" / f"g{g}_bright.png")
    for u in range(3):
        save(photo(900 + u), root / "misc" / f"unrelated {u}.jpg", quality=90)
    # same names in different folders, different pictures
    save(photo(500), root / "phone" / "IMG_0001.jpg")
    save(photo(501), root / "backup" / "IMG_0001.jpg")
    (root / "misc" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    (root / "misc" / "notes.txt").write_text("not an image")
    return root


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ./cluster.py as a user would, in a subprocess (``env``: variables to set besides)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "cluster.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
    )


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def make_video(path: Path, photos: list[Image.Image], *, seconds: float = 2.0, fps: int = 12,
               size: tuple[int, int] = (320, 240), bars: int = 0, bitrate: int | None = None,
               skip: float = 0.0, codec: str = "libx264", gop: int | None = None) -> Path:
    """A real slideshow video (H.264 by default, via PyAV): each photo shown ``seconds`` with
    a slow pan, optional black letterbox ``bars`` (pixels top and bottom, picture scaled to
    fit), ``skip`` seconds cut from the start, keyframes every ``gop`` frames."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), "w") as out:
        st = out.add_stream(codec, rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        if bitrate:
            st.bit_rate = bitrate
        if gop:
            st.codec_context.gop_size = gop  # keyframes every gop frames (a phone's encoder: ~1 s)
        n = int(seconds * fps)
        k = 0
        for ph in photos:
            big = ph.resize((int(w * 1.2), int(h * 1.2)))
            for f in range(n):
                k += 1
                if k <= skip * fps:
                    continue
                dx = int((big.width - w) * f / max(1, n - 1))
                im = big.crop((dx, 0, dx + w, h))
                if bars:
                    inner = im.resize((w, h - 2 * bars))
                    im = Image.new("RGB", (w, h))
                    im.paste(inner, (0, bars))
                for packet in st.encode(av.VideoFrame.from_image(im)):
                    out.mux(packet)
        for packet in st.encode():
            out.mux(packet)
    return path


def cluster_of(res, path, threshold: int, key: str | None = None) -> set[str]:
    """The files in ``path``'s cluster at ``threshold`` (just itself when unclustered)."""
    a = next(x for x in res.algorithms if key is None or x.key == key)
    p = next(p for p in a.partitions if p.threshold == threshold)
    for c in p.clusters:
        names = {res.files[i] for i in c}
        if str(path) in names:
            return names
    return {str(path)}


def gone_soon(folder: Path, pattern: str, timeout: float = 20) -> bool:
    """Whether nothing matches ``pattern`` in ``folder`` within ``timeout`` seconds (old
    trees are removed by a detached process after a run)."""
    import time

    end = time.monotonic() + timeout
    while list(folder.glob(pattern)):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


class LoopDisk:
    """A real filesystem in an image file (ext4, or exFAT through FUSE as a USB drive's),
    mounted at ``mnt`` through a loop device; :meth:`remount` mounts it again through
    another loop device (the first still held), so its files get another device number, as
    a USB disk plugged in after another one (on exFAT, other inode numbers too)."""

    def __init__(self, root: Path, kind: str = "ext4", options: str = ""):
        self.img, self.mnt, self.kind, self.options = root / "disk.img", root / "mnt", kind, options
        self.mnt.mkdir()
        with open(self.img, "wb") as f:
            f.truncate(64 << 20)
        mkfs = ["mkfs.ext4", "-q"] if kind == "ext4" else ["mkfs.exfat"]
        subprocess.run([*mkfs, str(self.img)], check=True, capture_output=True)
        self.devices: list[str] = []
        self._mount()

    def _mount(self) -> None:
        dev = subprocess.run(["losetup", "-f", "--show", str(self.img)], capture_output=True, text=True,
                             check=True).stdout.strip()
        self.devices.append(dev)
        mount = ["mount"] if self.kind == "ext4" else ["mount.exfat-fuse"]
        subprocess.run([*mount, *(["-o", self.options] if self.options else []), dev, str(self.mnt)], check=True,
                       capture_output=True)

    def _umount(self) -> bool:
        for _ in range(50):  # (an old tree's remover, a detached process, may still be at work there)
            if subprocess.run(["umount", str(self.mnt)], capture_output=True).returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def remount(self) -> None:
        assert self._umount(), f"{self.mnt} stayed busy"
        self._mount()

    def kill_driver(self) -> None:
        """Kill the FUSE driver serving an exFAT disk, as a crash or the out-of-memory killer
        would: the mount stays, and every call on it fails "Transport endpoint is not connected"."""
        assert self.kind == "exfat"
        for proc in Path("/proc").iterdir():
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args[:3] == [b"mount.exfat-fuse", self.devices[-1].encode(), str(self.mnt).encode()]:
                os.kill(int(proc.name), signal.SIGKILL)
                return
        raise AssertionError(f"no FUSE driver found for {self.mnt}")

    def _mounted(self) -> bool:  # (not os.path.ismount: a mount whose FUSE driver died cannot be stat'ed)
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == str(self.mnt) for line in f)

    def close(self) -> None:
        if self._mounted() and not self._umount():  # (a test may have unmounted it)
            subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
        for dev in self.devices:
            subprocess.run(["losetup", "-d", dev], capture_output=True)


def _loop_disk(tmp_path: Path, kind: str, options: str = ""):
    tools = ["losetup", "mkfs.ext4"] if kind == "ext4" else ["losetup", "mkfs.exfat", "mount.exfat-fuse"]
    if not (all(shutil.which(t) for t in tools) and os.geteuid() == 0):
        pytest.skip(f"needs root and {', '.join(tools)}")
    (tmp_path / "disk").mkdir()
    try:
        disk = LoopDisk(tmp_path / "disk", kind, options)
    except subprocess.CalledProcessError:
        pytest.skip(f"this machine cannot mount an {kind} loop device")
    try:
        yield disk
    finally:
        disk.close()


@pytest.fixture
def loop_disk(tmp_path: Path):
    """An ext4 :class:`LoopDisk` (root, losetup and mkfs.ext4 needed: skipped without them)."""
    yield from _loop_disk(tmp_path, "ext4")


@pytest.fixture
def exfat_disk(tmp_path: Path):
    """An exFAT :class:`LoopDisk` through FUSE (root, losetup, mkfs.exfat, mount.exfat-fuse)."""
    yield from _loop_disk(tmp_path, "exfat")



def drop_cached(path: Path, start: int = 0) -> None:
    """Drop what the kernel holds in memory of ``path`` from byte ``start`` on: the next read
    goes to its disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, start, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def unprivileged(cmd: list[str]) -> list[str]:
    """``cmd`` run without root's power to read any file (setpriv drops the capabilities),
    so a permission a test takes away holds; skipped when root lacks setpriv."""
    if os.geteuid() != 0:
        return cmd
    if not shutil.which("setpriv"):
        pytest.skip("running as root and setpriv (util-linux) is missing")
    return ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *cmd]


class FailingDisk:
    """An ext4 disk at ``mnt`` whose blocks lie in a file on an exFAT disk served by FUSE:
    :meth:`fail` kills that FUSE driver, and from then on every block the kernel has not
    cached is a real I/O error (EIO, "see dmesg"), as a failing or half-unplugged disk gives,
    while what was read before (folders listed, files read) is still served from memory."""

    def __init__(self, outer: LoopDisk, root: Path):
        self.outer, self.mnt = outer, root / "failing"
        self.mnt.mkdir()
        self.img = outer.mnt / "inner.img"
        with open(self.img, "wb") as f:
            f.truncate(48 << 20)
        subprocess.run(["mkfs.ext4", "-q", str(self.img)], check=True, capture_output=True)
        self.dev: str | None = None
        self._mount()

    def _mount(self) -> None:
        self.dev = subprocess.run(["losetup", "-f", "--show", str(self.img)], capture_output=True, text=True,
                                  check=True).stdout.strip()
        subprocess.run(["mount", "-o", "errors=continue", self.dev, str(self.mnt)], check=True, capture_output=True)

    def _umount(self) -> None:
        if subprocess.run(["umount", str(self.mnt)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
        if self.dev:
            subprocess.run(["losetup", "-d", self.dev], capture_output=True)
            self.dev = None

    def remount(self) -> None:
        """Mount it anew, its writes on the disk first: nothing of it in the kernel's memory."""
        self._umount()
        self.outer.remount()
        self._mount()

    def fail(self, listed: bool = True, read: tuple[Path, ...] = ()) -> None:
        """Mount it anew (nothing cached), list every folder if ``listed`` and read the
        files ``read``, then kill the driver: the rest of it answers EIO."""
        self.remount()
        if listed:
            for _folder, _dirs, _files in os.walk(self.mnt):
                pass
        for p in read:
            p.read_bytes()
        # what the loop device read ahead around them stays in the kernel's cache of the FUSE
        # file, where a dead driver is not asked: dropped, so only what was read is served
        drop_cached(self.img)
        self.outer.kill_driver()

    def fail_now(self) -> None:
        """Kill the driver and drop what the kernel cached of this disk (as memory pressure
        would; of this disk alone, not drop_caches: tests run side by side): from now on even
        the folders listed before answer EIO."""
        drop_cached(self.img)
        self.outer.kill_driver()
        subprocess.run(["blockdev", "--flushbufs", self.dev], check=True, capture_output=True)

    def close(self) -> None:
        self._umount()


@pytest.fixture
def failing_disk(tmp_path: Path):
    """A :class:`FailingDisk` (root, losetup, mkfs.ext4, mkfs.exfat and mount.exfat-fuse)."""
    outer = next(gen := _loop_disk(tmp_path, "exfat"))
    if not shutil.which("mkfs.ext4"):
        pytest.skip("needs mkfs.ext4")
    disk = FailingDisk(outer, tmp_path)
    try:
        yield disk
    finally:
        disk.close()
        gen.close()
