"""Videos: sampled, hashed and clustered beside images (real H.264 files made by the tests)."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from mhc import Options, parse_algorithm, run
from mhc.video import VideoSettings, sample_frames

from conftest import cluster_of, make_video, photo, save


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vid") / "in"
    a = [photo(700 + k) for k in range(4)]
    b = [photo(800 + k) for k in range(4)]
    s = 3.0  # seconds per photo: 12 s clips
    v = {
        "a": make_video(root / "trip" / "a.mp4", a, seconds=s),
        "a_reencoded": make_video(root / "copies" / "a small bitrate.mp4", a, seconds=s, bitrate=80_000),
        "a_downscaled": make_video(root / "copies" / "a 240p.mp4", a, seconds=s, size=(224, 168)),
        "a_trimmed": make_video(root / "copies" / "a trimmed.mp4", a, seconds=s, skip=1.0),
        "a_letterbox": make_video(root / "copies" / "a letterbox.mp4", a, seconds=s, size=(320, 320), bars=40),
        # another edit of the same photos: other order, other timing, one left out
        "a_edit": make_video(root / "other" / "same photos other edit.mp4", [a[2], a[0], a[3]], seconds=4.0),
        # exactly the same shots in another order
        "a_shuffled": make_video(root / "other" / "same shots other order.mp4", [a[2], a[0], a[3], a[1]], seconds=s),
        "a_long": make_video(root / "other" / "a twice as long.mp4", a + a, seconds=s),
        "b": make_video(root / "trip" / "b.mp4", b, seconds=s),
        "b_webm": make_video(root / "copies" / "b.webm", b, seconds=s, codec="libvpx"),
    }
    v["root"] = root
    return v


@pytest.fixture(scope="module")
def video_run(clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("vout") / "out"
    return run(Options(input=clips["root"], output=out, algorithms=["dhash_8", "phash_8"], workers=2)), out


def test_copies_cluster_and_different_videos_stay_apart(clips, video_run):
    res, out = video_run
    assert res.videos == len(res.files) == 10
    want = {str(clips[k]) for k in ("a", "a_reencoded", "a_downscaled", "a_trimmed", "a_letterbox")}
    assert want <= cluster_of(res, clips["a"], 6), sorted(cluster_of(res, clips["a"], 6) ^ want)
    for t in range(0, 10):
        group = cluster_of(res, clips["a"], t)
        # another edit of the same photos, and a video twice as long, are not copies
        assert str(clips["a_edit"]) not in group
        assert str(clips["a_long"]) not in group
    assert cluster_of(res, clips["b"], 6) == {str(clips["b"]), str(clips["b_webm"])}


def test_duration_gate_is_what_keeps_the_long_video_out(clips, tmp_path):
    # with the gate off the long video (the same pictures, twice) joins: the gate did the work
    res = run(Options(input=clips["root"], output=tmp_path / "o", algorithms=["dhash_8"], duration_tolerance=0,
                      workers=2, thresholds="6", no_report=True))
    assert str(clips["a_long"]) in cluster_of(res, clips["a"], 6)


def test_frame_sequence_matching_keeps_reordered_scenes_apart(clips, tmp_path):
    import shutil

    from mhc import MatchOptions, hash_folder

    names = ("a", "a_shuffled", "a_reencoded")
    three = tmp_path / "three"
    for k in names:  # in this order by name: 0 a, 1 a_shuffled, 2 a_reencoded
        shutil.copy(clips[k], three.mkdir(exist_ok=True) or three / f"{names.index(k)} {k}.mp4")
    hashed = hash_folder(three, ["dhash_8"], workers=1)

    def dist(mode: str) -> dict[tuple[int, int], int]:
        e = hashed.metric("dhash_8", MatchOptions(video_match=mode)).edges_within(64)
        return {(int(i), int(j)): int(d) for i, j, d in zip(e.i, e.j, e.d)}

    majority, frames = dist("majority"), dist("frames")
    # the same shots in another order: close by the order-free majority hash, far frame by frame
    assert frames[(0, 1)] >= majority[(0, 1)] + 8 and frames[(0, 1)] > 12
    # a re-encoded copy stays close either way
    assert frames[(0, 2)] <= 4 and majority[(0, 2)] <= 4
    out = run(Options(input=clips["root"], output=tmp_path / "o", algorithms=["dhash_8"], video_match="frames",
                      thresholds="0:12:1", workers=2, no_report=True))
    for t in range(0, 13):
        assert str(clips["a_shuffled"]) not in cluster_of(out, clips["a"], t)
    assert {str(clips["a"]), str(clips["a_reencoded"]), str(clips["a_downscaled"])} <= cluster_of(out, clips["a"], 6)


def test_letterbox_bars_are_cropped(clips):
    full = sample_frames(str(clips["a"]), VideoSettings(frames=4))
    boxed = sample_frames(str(clips["a_letterbox"]), VideoSettings(frames=4))
    assert boxed.height == boxed.width == 320
    assert abs(boxed.content_aspect - full.content_aspect) < 0.05  # bars gone: 4:3 picture again
    assert len(full.frames) == 4


def test_corrupt_videos_reported_and_run_goes_on(clips, tmp_path, capfd):
    inp = tmp_path / "in"
    good = make_video(inp / "good.mp4", [photo(1), photo(2)])
    data = good.read_bytes()
    (inp / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (inp / "cut before the index.mp4").write_bytes(data[:2000])  # no moov atom: FFmpeg has words for it
    photo(4).save(inp / "photo.jpg.mp4", "JPEG")  # a picture under a video's extension
    (inp / "clip.mp4.jpg").write_bytes(data)  # and the other way round
    (inp / "empty.mp4").write_bytes(b"")
    (inp / "notes.mp4").write_text("this is not a video\n" * 20)
    _audio_only(inp / "song.mkv")
    save(photo(3), inp / "still.jpg")
    res = run(Options(input=inp, output=tmp_path / "out", algorithms=["phash_8"], workers=1))
    rows = {r["path"]: r["reason"] for r in csv.DictReader((tmp_path / "out" / "errors.csv").open())}
    assert set(rows) == {str(inp / n) for n in ("truncated.mp4", "empty.mp4", "notes.mp4", "song.mkv",
                                                "cut before the index.mp4", "photo.jpg.mp4", "clip.mp4.jpg")}
    # (not the path: FFmpeg's own message carries it, which once made "truncated" pass here)
    assert "truncated" in rows[str(inp / "truncated.mp4")].replace(str(inp), "") or \
        "damaged" in rows[str(inp / "truncated.mp4")]
    assert rows[str(inp / "cut before the index.mp4")] == ("not a readable video: damaged, cut short or not a video "
                                                           "(Invalid data found when processing input)")
    assert rows[str(inp / "photo.jpg.mp4")].startswith("a JPEG image with a video's extension (.mp4)")
    assert rows[str(inp / "clip.mp4.jpg")].startswith("an MP4 video with an image's extension (.jpg)")
    # FFmpeg (through OpenCV's fallback) says nothing on the terminal: one line per file is mhc's
    assert "moov atom" not in capfd.readouterr().err
    assert "empty" in rows[str(inp / "empty.mp4")]
    assert "text" in rows[str(inp / "notes.mp4")]
    assert "no video stream" in rows[str(inp / "song.mkv")]
    assert res.files == [str(good), str(inp / "still.jpg")]


def _audio_only(path: Path) -> None:
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        st = out.add_stream("flac", rate=8000)
        st.layout = "mono"
        st.format = "s16"
        for k in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1000), dtype=np.int16), format="s16", layout="mono")
            frame.sample_rate = 8000
            frame.pts = k * 1000
            for p in st.encode(frame):
                out.mux(p)
        for p in st.encode():
            out.mux(p)


def test_mixed_folder_gives_one_coherent_output(clips, tmp_path):
    inp = tmp_path / "mixed"
    a = [photo(700 + k) for k in range(4)]
    make_video(inp / "clip.mp4", a)
    make_video(inp / "clip copy.mp4", a, bitrate=100_000)
    # a still taken from the clip (its second photo, as shown at one moment)
    still = a[1].resize((384, 288)).crop((32, 0, 352, 240))
    save(still, inp / "still from clip.jpg")
    save(still.resize((160, 120)), inp / "still small.jpg")
    save(photo(5), inp / "unrelated.jpg")
    out = tmp_path / "out"
    res = run(Options(input=inp, output=out, algorithms=["dhash_8"], thresholds="0:10:1", workers=1))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["images"] == 3 and summary["counts"]["videos"] == 2
    assert summary["kinds"] == ["video", "video", "image", "image", "image"]
    p = res.algorithms[0].partitions[-1]
    groups = sorted(sorted(os.path.basename(res.files[i]) for i in c) for c in p.clusters)
    # by default images link with images and videos with videos only
    assert groups == [["clip copy.mp4", "clip.mp4"], ["still from clip.jpg", "still small.jpg"]]
    # every file once per threshold folder, videos linked like images
    for thr in (out / "dhash_8").iterdir():
        targets = [os.readlink(x) for x in thr.rglob("*") if x.is_symlink()]
        assert sorted(targets) == sorted(res.files)
    # --cross-media links the still with the clip it was taken from
    res2 = run(Options(input=inp, output=tmp_path / "out2", algorithms=["dhash_8"], thresholds="0:10:1",
                       cross_media=True, workers=1))
    p2 = res2.algorithms[0].partitions[-1]
    big = max((sorted(os.path.basename(res2.files[i]) for i in c) for c in p2.clusters), key=len)
    assert big == ["clip copy.mp4", "clip.mp4", "still from clip.jpg", "still small.jpg"]
    # the report shows videos by a poster frame
    thumbs = list((out / ".mhc" / "thumbs").iterdir())
    assert len(thumbs) == 5 and all(Image.open(t).size[0] > 0 for t in thumbs)


def test_video_hashes_are_cached(clips, tmp_path):
    opts = dict(input=clips["root"], output=tmp_path / "o", cache=tmp_path / "c.sqlite", algorithms=["dhash_8"],
                workers=2, no_report=True)
    first = run(Options(**opts))
    again = run(Options(**opts))
    assert first.stats.decoded == 10 and again.stats.decoded == 0
    assert [p.clusters for p in first.algorithms[0].partitions].__repr__() == \
        [p.clusters for p in again.algorithms[0].partitions].__repr__()
    # other sampling settings are other cache entries
    assert run(Options(**opts, frames=10)).stats.decoded == 10


def test_hdbscan_keeps_images_and_videos_apart_and_honours_the_gates(clips, tmp_path):
    import shutil

    inp = tmp_path / "in"
    shutil.copytree(clips["root"], inp)
    for k in range(4):  # stills of clip a's photos: close to a's frames
        save(photo(700 + k), inp / "stills" / f"still {k}.jpg")
    res = run(Options(input=inp, output=tmp_path / "o", algorithms=["whash_8", "phash_8"], method="hdbscan",
                      workers=2, no_report=True))
    for a in res.algorithms:
        for c in a.partitions[0].clusters:
            assert len({res.kinds[i] for i in c}) == 1, [res.files[i] for i in c]
            names = {os.path.basename(res.files[i]) for i in c}
            assert not ({"a.mp4", "a twice as long.mp4"} <= names)  # the duration gate holds


def test_few_frames_per_video_still_match_a_reencode(clips, tmp_path):
    """With few frames, the nearest keyframe to a target differs between two encodes of a
    clip with other keyframe spacings; mhc samples exact times then."""
    from mhc.metric import majority
    from mhc.video import VideoSettings

    inp = tmp_path / "in"
    a = make_video(inp / "a.mp4", [photo(700 + k) for k in range(4)], seconds=3.0)
    r = make_video(inp / "a reencoded.mp4", [photo(700 + k) for k in range(4)], seconds=3.0, bitrate=80_000, gop=7)
    b = make_video(inp / "b.mp4", [photo(800 + k) for k in range(4)], seconds=3.0)
    algo = parse_algorithm("phash_8")

    def keyframe_distance(frames: int) -> int:  # what sampling nearest keyframes would give
        h = [majority(b"".join(algo.hash_image(f) for f in sample_frames(str(v), VideoSettings(frames=frames)).frames),
                      8) for v in (a, r)]
        return (int.from_bytes(h[0], "big") ^ int.from_bytes(h[1], "big")).bit_count()

    assert keyframe_distance(2) >= 8  # the test can fail
    for frames in (1, 2, 4):
        res = run(Options(input=inp, output=tmp_path / f"o{frames}", algorithms=["phash_8"], frames=frames,
                          workers=1, thresholds="0:16:1", no_report=True))
        i = {p: k for k, p in enumerate(res.files)}
        d = res.algorithms[0].metric.between([i[str(a)], i[str(a)]], [i[str(r)], i[str(b)]])
        assert d[0] <= 2 and d[0] < d[1], (frames, d)


def _with_display_rotation(src: Path, dst: Path) -> Path:
    """``src`` as a phone stores a portrait video: the same bytes, with the track's display
    matrix (tkhd) set to turn it 90 degrees clockwise when shown (FFmpeg reads -90)."""
    import struct

    data = bytearray(src.read_bytes())
    i = data.find(b"tkhd")
    assert i > 0 and data[i + 4] == 0, "a version-0 tkhd box"
    matrix = i + 4 + 4 + 5 * 4 + 8 + 4 * 2  # size/type, version+flags, times, ids, reserved, layer...volume
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(data))
    return dst


def _turned_reencode(src: Path, dst: Path) -> Path:
    """What a player shows and a re-encode keeps: every frame of ``src`` turned 90 degrees
    clockwise, encoded again (no rotation flag)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        st_in = inp.streams.video[0]
        st = out.add_stream("libx264", rate=12)
        st.width, st.height, st.pix_fmt = st_in.height, st_in.width, "yuv420p"
        for frame in inp.decode(st_in):
            im = frame.to_image().transpose(Image.Transpose.ROTATE_270)
            for pkt in st.encode(av.VideoFrame.from_image(im).reformat(format="yuv420p")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return dst


def test_a_phone_video_with_a_rotation_flag_matches_its_upright_copy(tmp_path):
    """Phones store portrait video as landscape frames plus a display rotation; players, and
    any re-encode, show it turned. mhc hashes what is shown, as it does for EXIF orientation."""
    import av

    stored = make_video(tmp_path / "src" / "stored.mp4", [photo(31), photo(32), photo(33)], seconds=1.5)
    inp = tmp_path / "in"
    flagged = _with_display_rotation(stored, inp / "phone" / "VID_0001.mp4")
    with av.open(str(flagged)) as c:
        assert next(c.decode(c.streams.video[0])).rotation == -90  # FFmpeg reads the flag
    (inp / "shared").mkdir()
    upright = _turned_reencode(stored, inp / "shared" / "upright.mp4")
    make_video(inp / "other.mp4", [photo(34), photo(35), photo(36)], seconds=1.5)
    res = run(Options(input=inp, output=tmp_path / "out", algorithms=["phash_8"], thresholds="0:8:1", workers=1))
    assert cluster_of(res, flagged, 6, "phash_8") == {str(flagged), str(upright)}
    info = json.loads((tmp_path / "out" / "summary.json").read_text())["file_info"]
    k = res.files.index(str(flagged))
    assert (info["width"][k], info["height"][k]) == (240, 320)  # the size as shown
    from mhc.thumbs import THUMB_DIR, thumb_name

    with Image.open(tmp_path / "out" / THUMB_DIR / thumb_name(str(flagged))) as thumb:
        assert thumb.height > thumb.width  # the report shows it upright too


def test_a_heif_or_avif_picture_is_not_taken_for_an_mp4(tmp_path):
    """HEIF and AVIF pictures are ISO media files, as MP4 is: only their brand tells them
    apart. A damaged AVIF is a damaged picture, an AVIF under .mp4 a picture misnamed."""
    from mhc.signatures import image_signature, video_signature

    inp = tmp_path / "in"
    inp.mkdir()
    photo(5).save(tmp_path / "p.avif", "AVIF")
    clip = make_video(tmp_path / "c.mp4", [photo(6)], seconds=0.5)
    avif = (tmp_path / "p.avif").read_bytes()
    assert (image_signature(avif[:16]), video_signature(avif[:16])) == ("AVIF", None)
    assert (image_signature(clip.read_bytes()[:16]), video_signature(clip.read_bytes()[:16])) == (None, "MP4")
    (inp / "damaged.avif").write_bytes(avif[:40])
    (inp / "picture.mp4").write_bytes(avif)
    res = run(Options(input=inp, output=tmp_path / "out", algorithms=["phash_8"], workers=1))
    reasons = {Path(e.path).name: e.reason for e in res.errors}
    assert reasons["damaged.avif"].startswith("corrupt AVIF data"), reasons
    assert reasons["picture.mp4"].startswith("an AVIF image with a video's extension (.mp4)"), reasons


_SCALED_IN_THE_PARENT = """
import sys
from pathlib import Path
import av
from mhc import Options, run

with av.open(sys.argv[1]) as c:  # a frame scaled in this process first, as a script or a test fixture does
    next(c.decode(video=0)).reformat(width=100, height=80, format="rgb24")
res = run(Options(input=Path(sys.argv[2]), output=Path(sys.argv[3]), no_cache=True, algorithms=["phash_8"],
                  file_timeout=60, no_report=True))
print(len(res.files), len(res.collection.errors))
"""


def test_videos_hash_in_workers_after_the_calling_process_scaled_a_frame(clips, tmp_path):
    """PyAV 18.1.1 keeps one scaler per thread: a forked worker inherited the calling
    process's, with swscale's slice threads that only the parent has, and its first frame of
    another size waited forever to join them (each video then took --file-timeout, 300 s,
    and was reported as too slow). mhc's decoding now scales with a scaler of its own."""
    import subprocess
    import sys

    inp = tmp_path / "in"
    inp.mkdir()
    for name in list(clips)[:2]:
        os.symlink(clips[name], inp / clips[name].name)
    r = subprocess.run([sys.executable, "-c", _SCALED_IN_THE_PARENT, str(clips[list(clips)[0]]), str(inp),
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["2", "0"], (r.stdout, r.stderr[-2000:])


def test_a_worker_never_collects_what_the_calling_process_left_in_a_reference_cycle(tmp_path):
    """A PyAV codec context left in a reference cycle by the calling process (the test
    suite's fixtures, a user's script that decoded a video first) was freed by a forked
    worker's garbage collector: FFmpeg then joined decoding threads that exist only in the
    caller, and the worker hung until --file-timeout (every retry too; seen with PyAV 17.0).
    Workers now never collect inherited objects. Here the cycle's finalizer tells whether a
    worker collected it."""
    import gc

    from mhc.pool import worker_init

    said = tmp_path / "collected"

    class Left:
        def __del__(self):
            said.write_text(str(os.getpid()))

    gc.disable()  # (the cycle stays garbage until the worker's collector runs)
    try:
        left = Left()
        left.me = left
        del left
        pid = os.fork()
        if pid == 0:  # a worker as a pool starts it, whose collector then runs
            code = 1
            try:
                worker_init()
                gc.enable()
                gc.collect()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert not said.exists(), f"collected in the worker (pid {said.read_text()})"
    finally:
        gc.enable()
        gc.collect()  # here, in the caller, it is collected
    assert said.read_text() == str(os.getpid())
