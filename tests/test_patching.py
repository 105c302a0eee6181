"""Reruns change the old tree in place (mhc.patching): the result is the tree a fresh run
writes, what did not change is not rewritten, and an interrupted commit is undone."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from conftest import photo, save, tree_digest
from invariants import check
from mhc import Options, run
from mhc.errors import MhcError

O = dict(algorithms=["phash_8", "dhash_8"], thresholds="0:16:1", workers=1)


def _links(out: Path) -> dict[str, str]:
    """The tree of links (path -> target), without the report and the summary."""
    return {k: v for k, v in tree_digest(out).items() if k.split("/")[0] in ("phash_8", "dhash_8")}


def _readable(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.suffix in (".jpg", ".png") and p.name != "broken.jpg"}


def _same_as_fresh(inp: Path, out: Path, tmp_path: Path, **kw) -> None:
    fresh = tmp_path / "fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    run(Options(input=inp, output=fresh, **{**O, **kw}), background_cleanup=False)
    assert _links(out) == _links(fresh)
    assert check(out, readable=_readable(inp)) == []


def _tree(out: Path) -> dict[str, str]:
    """The output without .mhc/ (thumbnails are made in place by hashing, kept by design)."""
    return {k: v for k, v in tree_digest(out).items() if not k.startswith(".mhc")}


def _inode(p: Path) -> int:
    return p.stat().st_ino


def test_new_files_patch_the_folders_and_give_the_fresh_tree(corpus, tmp_path):
    out = tmp_path / "out"
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    thr0 = next((out / "phash_8").glob("thr_000_*"))
    unclustered = next(thr0.glob("unclustered_*"))
    ino = _inode(unclustered)
    # a new unrelated picture, and a new copy of a clustered one
    save(photo(4242), corpus / "new" / "fresh.jpg", quality=90)
    save(ImageEnhance.Contrast(Image.open(corpus / "group1" / "original.jpg")).enhance(1.1),
         corpus / "new" / "g1 contrast.jpg", quality=85)
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    _same_as_fresh(corpus, out, tmp_path)
    new_thr0 = next((out / "phash_8").glob("thr_000_*"))
    assert new_thr0.name != thr0.name  # one more unclustered file: the folder has a new name...
    assert _inode(next(new_thr0.glob("unclustered_*"))) == ino  # ...and is the old folder, patched


def test_removed_and_renamed_files_patch_the_folders(corpus, tmp_path):
    out = tmp_path / "out"
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    (corpus / "edits" / "g2_bright.png").unlink()
    (corpus / "misc" / "unrelated 1.jpg").rename(corpus / "misc" / "renamed.jpg")
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    _same_as_fresh(corpus, out, tmp_path)


def test_relative_links_are_patched_relative(corpus, tmp_path):
    out = tmp_path / "out"
    run(Options(input=corpus, output=out, relative_links=True, **O), background_cleanup=False)
    save(photo(77), corpus / "new.jpg")
    run(Options(input=corpus, output=out, relative_links=True, **O), background_cleanup=False)
    _same_as_fresh(corpus, out, tmp_path, relative_links=True)
    assert all(not os.readlink(p).startswith("/") for p in out.rglob("*.jpg") if p.is_symlink())


def test_a_link_replaced_by_a_file_of_the_user_is_refused_not_removed(corpus, tmp_path):
    out = tmp_path / "out"
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    gone = corpus / "misc" / "unrelated 2.jpg"
    thr0 = next((out / "phash_8").glob("thr_000_*"))
    link = next(p for p in next(thr0.glob("unclustered_*")).iterdir() if p.name.startswith("unrelated 2"))
    link.unlink()
    link.write_text("my own file")  # where mhc's link was
    gone.unlink()  # so the next run removes that link
    before = tree_digest(out)
    with pytest.raises(MhcError, match="mhc did not make"):
        run(Options(input=corpus, output=out, **O), background_cleanup=False)
    assert tree_digest(out) == before and link.read_text() == "my own file"


def test_a_cluster_folder_deleted_by_hand_is_written_again(corpus, tmp_path):
    out = tmp_path / "out"
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    thr = next((out / "phash_8").glob("thr_008_*"))
    shutil.rmtree(next(d for d in thr.iterdir() if not d.name.startswith("unclustered")))
    save(photo(78), corpus / "new.jpg")
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    _same_as_fresh(corpus, out, tmp_path)


def _kept_and_damaged(corpus: Path, out: Path, **kw) -> tuple[dict[str, str], Path]:
    """Run, then delete by hand what a user browsing the output might: a link (a viewer's
    delete), a cluster folder, a threshold folder, an unclustered link; and leave a viewer's
    file in a cluster folder. Returns the links of the run and that file."""
    run(Options(input=corpus, output=out, **{**O, **kw}), background_cleanup=False)
    links = _links(out)
    thr = sorted((out / "phash_8").glob("thr_*"))
    clusters = [sorted(d for d in t.iterdir() if not d.name.startswith("unclustered")) for t in thr]
    next(clusters[8][0].iterdir()).unlink()
    shutil.rmtree(clusters[9][0])
    shutil.rmtree(thr[10])
    next(next(thr[0].glob("unclustered_*")).iterdir()).unlink()
    junk = clusters[12][0] / "Thumbs.db"
    junk.write_text("a viewer's")
    assert len(_links(out)) < len(links)
    return links, junk


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_what_a_user_deleted_in_the_output_comes_back_on_a_rerun(corpus, tmp_path, link):
    """A rerun with nothing changed kept every folder as it was on disk: a link deleted in a
    viewer (the user thinking the duplicate was gone) stayed missing, and so did a deleted
    cluster or threshold folder, while the summary and the report still listed them."""
    from mhc.report import rebuild_report

    out = tmp_path / "out"
    links, junk = _kept_and_damaged(corpus, out, link=link)
    rebuild_report(out)  # keeps the folders without checking them: it must not hide what is missing
    run(Options(input=corpus, output=out, link=link, **O), background_cleanup=False)
    again = _links(out)
    assert again.pop(str(junk.relative_to(out))).startswith(hashlib.sha256(b"a viewer's").hexdigest())
    assert again == links  # every link back, and the viewer's file left where it was
    junk.unlink()
    assert check(out, readable=_readable(corpus)) == []


def test_what_a_user_deleted_comes_back_in_folders_patched_for_a_new_file(corpus, tmp_path):
    out = tmp_path / "out"
    _, junk = _kept_and_damaged(corpus, out)
    save(photo(78), corpus / "new.jpg")  # every threshold folder changes: patched, not kept
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    moved = list(out.rglob(junk.name))  # its threshold folder has a new name now
    assert [p.read_text() for p in moved] == ["a viewer's"]  # a renamed cluster folder keeps what is in it
    moved[0].unlink()
    _same_as_fresh(corpus, out, tmp_path)


def test_a_rerun_lists_only_the_folders_changed_since_the_last(corpus, tmp_path, monkeypatch):
    import mhc.repair

    out = tmp_path / "out"
    for _ in range(2):  # (the second stamps the marker after every folder the first made)
        run(Options(input=corpus, output=out, **O), background_cleanup=False)
    victim = next(next((out / "dhash_8").glob("thr_004_*")).glob("unclustered_*"))
    link = next(victim.iterdir())
    listed = []
    real = os.scandir  # (the os module's: repair's own calls are told apart by their folders)
    monkeypatch.setattr(mhc.repair.os, "scandir", lambda p=".": listed.append(str(p)) or real(p))
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    in_folders = lambda: [p for p in listed if "/thr_" in p]  # noqa: E731  (not the input, which discovery lists)
    assert in_folders() == []  # one stat per folder, no listing
    link.unlink()
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    assert in_folders() == [str(victim)] and link.is_symlink()


def test_a_users_file_under_a_links_name_in_a_kept_folder_is_refused(corpus, tmp_path):
    out = tmp_path / "out"
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    link = next(next(next((out / "phash_8").glob("thr_005_*")).glob("001_*")).iterdir())
    link.unlink()
    link.write_text("my own file")  # where mhc's link was; the input did not change
    before = tree_digest(out)
    with pytest.raises(MhcError, match="mhc did not make"):
        run(Options(input=corpus, output=out, **O), background_cleanup=False)
    assert tree_digest(out) == before and link.read_text() == "my own file"


_KILLER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import mhc.output as output
    from mhc import Options, run
    real, count, stop = output.do_change, [0], int(sys.argv[3])
    def do(op, staging):
        count[0] += 1
        if count[0] > stop:
            os._exit(9)  # killed in the middle of the commit: no cleanup runs
        real(op, staging)
    output.do_change = do
    run(Options(input=Path(sys.argv[1]), output=Path(sys.argv[2]), algorithms=["phash_8", "dhash_8"],
                thresholds="0:16:1", workers=1))
""")


@pytest.mark.parametrize("stop", [1, 3, 10, 40])
def test_a_run_killed_inside_the_commit_is_undone_by_the_next(corpus, tmp_path, stop):
    out = tmp_path / "out"
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    before = _tree(out)
    save(photo(4243), corpus / "new" / "a.jpg")
    (corpus / "edits" / "g0_bright.png").unlink()
    r = subprocess.run([sys.executable, "-c", _KILLER, str(corpus), str(out), str(stop)], capture_output=True,
                       text=True, cwd=Path(__file__).parent.parent)
    assert r.returncode == 9, r.stderr
    assert list(tmp_path.glob(".out.mhc-staging-*"))  # the killed run's half commit
    # the next run (any run on this output) first undoes it: the old tree is whole again
    from mhc.output import OutputFolder

    with OutputFolder(out, corpus):
        pass
    assert _tree(out) == before
    assert not list(tmp_path.glob(".out.mhc-staging-*"))
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    _same_as_fresh(corpus, out, tmp_path)


def test_a_failure_inside_the_commit_is_undone_at_once(corpus, tmp_path, monkeypatch):
    import mhc.output as output

    out = tmp_path / "out"
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    before = _tree(out)
    save(photo(4244), corpus / "new.jpg")
    real, count = output.do_change, [0]

    def failing(op, staging):
        count[0] += 1
        if count[0] == 6:
            raise OSError(28, "No space left on device", op[2])
        real(op, staging)

    monkeypatch.setattr(output, "do_change", failing)
    with pytest.raises(MhcError, match="disk is full"):
        run(Options(input=corpus, output=out, **O), background_cleanup=False)
    assert count[0] == 6 and _tree(out) == before
    assert not list(tmp_path.glob(".out.mhc-staging-*"))


def test_a_rerun_with_files_added_grows_the_forest_without_a_pair_search(corpus, tmp_path, monkeypatch):
    from mhc.metric import HashMetric

    out = tmp_path / "out"
    run(Options(input=corpus, output=out, isometric=True, **O), background_cleanup=False)
    save(photo(4245), corpus / "new" / "b.jpg")
    save(ImageEnhance.Brightness(Image.open(corpus / "group3" / "original.jpg")).enhance(0.9).rotate(90, expand=True),
         corpus / "new" / "g3 turned.jpg")

    def no_search(self, radius, progress=None):
        raise AssertionError("the pair search ran: the previous forest was not grown")

    with monkeypatch.context() as m:
        m.setattr(HashMetric, "edges", no_search)
        run(Options(input=corpus, output=out, isometric=True, **O), background_cleanup=False)
    _same_as_fresh(corpus, out, tmp_path, isometric=True)
    turned = str(corpus / "new" / "g3 turned.jpg")
    from mhc.summary import clusters, read_summary

    assert any(turned in c and str(corpus / "group3" / "original.jpg") in c
               for c in clusters(read_summary(out), "phash_8", 8))


def test_a_rerun_renders_only_the_report_pages_that_changed(corpus, tmp_path, monkeypatch):
    import mhc.report as report

    monkeypatch.setattr(report, "PAGE_FILES", 3)  # many pages from a few files
    monkeypatch.setattr(report, "UNCLUSTERED_SHOWN", 4)
    o = dict(O, algorithms=["phash_8"])
    out = tmp_path / "out"
    run(Options(input=corpus, output=out, **o), background_cleanup=False)
    pages = lambda root: {p.name: p for p in (root / "report" / "phash_8").iterdir()}  # noqa: E731
    before = {name: _inode(p) for name, p in pages(out).items()}
    assert len(before) > 2 * 17  # several pages per threshold
    save(photo(4246), corpus / "zz" / "new.jpg")  # unclustered everywhere; last in the file order
    run(Options(input=corpus, output=out, **o), background_cleanup=False)
    fresh = tmp_path / "fresh"
    run(Options(input=corpus, output=fresh, **o), background_cleanup=False)
    now, want = pages(out), pages(fresh)
    assert now.keys() == want.keys()
    for name in want:  # every page, kept or rendered, is the page a fresh run makes
        assert now[name].read_text() == want[name].read_text(), name
    kept = {name for name, p in now.items() if before.get(name) == _inode(p)}
    assert kept and len(kept) < len(now)
    assert all("-" in name for name in kept)  # a first page (thr_NNN.html) holds the counts: never kept


def test_changed_clusters_are_patched_too(corpus, tmp_path, monkeypatch):
    """A cluster that gained or lost a member is patched (links added and removed in the old
    cluster folder, renamed to its new size) when it is large; here 'large' is 2 files."""
    import mhc.patching as patching

    monkeypatch.setattr(patching, "PATCH_MIN", 2)
    out = tmp_path / "out"
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    thr = next((out / "phash_8").glob("thr_010_*"))
    original = str(corpus / "group1" / "original.jpg")
    g1 = next(d for d in thr.iterdir() if not d.name.startswith("unclustered")
              and any(os.readlink(p) == original for p in d.iterdir()))  # the cluster the new copy joins
    ino = _inode(g1)
    save(ImageEnhance.Contrast(Image.open(corpus / "group1" / "original.jpg")).enhance(1.1),
         corpus / "new" / "g1 contrast.jpg", quality=85)
    (corpus / "edits" / "g2_bright.png").unlink()
    seen = []
    real = patching.plan_patch

    def spy(*a, **k):
        seen.append(real(*a, **k))
        return seen[-1]

    monkeypatch.setattr(patching, "plan_patch", spy)
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    assert any(sub.startswith(("001_", "002_", "003_", "004_")) for pt in seen for sub, _ in pt.add)
    assert any(sub.startswith(("001_", "002_", "003_", "004_")) for pt in seen for sub, _, _ in pt.remove)
    _same_as_fresh(corpus, out, tmp_path)
    assert any(_inode(d) == ino for d in next((out / "phash_8").glob("thr_010_*")).iterdir())


def test_a_journal_of_an_earlier_mhc_is_still_undone(corpus, tmp_path):
    """Journals written before changes were counted (JSON with "moves") are rolled back."""
    import json

    from mhc.discover import MARKER
    from mhc.output import OutputFolder
    from mhc.ownership import JOURNAL

    out = tmp_path / "out"
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    before = _tree(out)
    staging = tmp_path / ".out.mhc-staging-99999"
    (staging / "phash_8").mkdir(parents=True)
    (staging / MARKER).write_text("made by mhc\n")
    moved = next((out / "phash_8").iterdir()).name
    os.rename(out / "phash_8" / moved, staging / "phash_8" / moved)  # killed after one move
    (staging / JOURNAL).write_text(json.dumps({"out": str(out), "moves": [f"phash_8/{moved}", "dhash_8"]}))
    with OutputFolder(out, corpus):
        pass
    assert _tree(out) == before and not staging.exists()


def test_without_renameat2_the_swap_is_two_renames_and_a_failure_between_them_is_undone(corpus, tmp_path,
                                                                                       monkeypatch):
    import mhc.output as output

    monkeypatch.setattr(output, "exchange", lambda a, b: False)  # a filesystem without RENAME_EXCHANGE
    out = tmp_path / "out"
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    save(photo(4247), corpus / "new1.jpg")
    run(Options(input=corpus, output=out, **O), background_cleanup=False)
    _same_as_fresh(corpus, out, tmp_path)
    before = _tree(out)
    save(photo(4248), corpus / "new2.jpg")
    real = os.rename

    def failing(a, b, *rest):
        if ".mhc-staging-" in str(a) and Path(b) == out:
            raise OSError(28, "No space left on device", str(b))
        return real(a, b, *rest)

    monkeypatch.setattr(output.os, "rename", failing)
    with pytest.raises(MhcError, match="disk is full"):
        run(Options(input=corpus, output=out, **O), background_cleanup=False)
    monkeypatch.setattr(output.os, "rename", real)
    assert _tree(out) == before
    assert not list(tmp_path.glob(".out.mhc-staging-*")) and not list(tmp_path.glob(".out.mhc-old-*"))
