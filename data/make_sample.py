#!/usr/bin/env python3
"""Rebuild data/images, the bundled sample set, from public-domain / CC0 photos.

The source photos ship with scikit-image (``skimage/data``); their licences are listed
in data/README.md. Each source gets near-duplicate variants made here (resized,
recompressed, brightened, watermarked, cropped, stored rotated with an EXIF tag) and a
few unrelated pictures are added. Deterministic; maintainers run it once:

    pip install scikit-image && python data/make_sample.py
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

HERE = Path(__file__).resolve().parent
OUT = HERE / "images"
LONG_SIDE = 640

# name in skimage/data -> (folder, file stem) of the "original"
SOURCES = {
    "astronaut.png": ("trips/2019 space museum", "astronaut"),
    "chelsea.png": ("pets", "chelsea the cat"),
    "coffee.png": ("food", "coffee"),
    "rocket.jpg": ("trips/2019 space museum", "launch"),
    "camera.png": ("old scans", "cameraman"),
    "coins.png": ("old scans", "coins"),
    "hubble_deep_field.jpg": ("space", "hubble deep field"),
}
UNRELATED = {"brick.png": "brick wall", "grass.png": "grass", "gravel.png": "gravel",
             "retina.jpg": "retina", "text.png": "text scan", "ihc.png": "stained tissue"}


def _load(name: str) -> Image.Image:
    import skimage

    im = Image.open(Path(skimage.__file__).parent / "data" / name)
    im = im.convert("RGB") if im.mode not in ("L", "RGB") else im
    w, h = im.size
    k = LONG_SIDE / max(w, h)
    return im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.LANCZOS) if k < 1 else im


def _save(im: Image.Image, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    if fmt == "JPEG":
        kw.setdefault("quality", 88)
    im.save(path, fmt, **kw)


def _watermark(im: Image.Image, text: str) -> Image.Image:
    im = im.convert("RGB")
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=max(12, im.width // 22))
    draw.text((im.width * 0.05, im.height * 0.85), text, fill=(255, 255, 255), font=font,
              stroke_width=2, stroke_fill=(0, 0, 0))
    return im


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    for i, (src, (folder, stem)) in enumerate(sorted(SOURCES.items())):
        im = _load(src)
        _save(im, OUT / folder / f"{stem}.jpg")
        w, h = im.size
        edits = OUT / "edits"
        _save(im.resize((w // 2, h // 2), Image.LANCZOS), edits / f"{stem} small.jpg")
        _save(im, edits / f"{stem} recompressed.jpg", quality=30)
        _save(ImageEnhance.Brightness(im).enhance(1.3), edits / f"{stem} brighter.jpg")
        _save(_watermark(im, "(c) mhc sample"), edits / f"{stem} watermarked.jpg")
        if i % 2 == 0:
            dx, dy = w // 20, h // 20
            _save(im.crop((dx, dy, w - dx, h - dy)), edits / f"{stem} cropped.jpg")
        else:
            _save(im, edits / f"{stem}.png")
    # a phone folder: the same photo stored rotated with an EXIF orientation tag, and a
    # backup folder whose files have the same names as the phone's
    cat = _load("chelsea.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the pixels are stored turned the other way
    _save(cat.transpose(Image.Transpose.ROTATE_90), OUT / "phone" / "IMG_0001.jpg", exif=exif)
    _save(_load("coffee.png"), OUT / "phone" / "IMG_0002.jpg", quality=80)
    _save(_load("coffee.png").resize((320, 213), Image.LANCZOS), OUT / "backup" / "IMG_0002.jpg")
    _save(_load("rocket.jpg"), OUT / "backup" / "IMG_0001.jpg", quality=70)
    for src, stem in sorted(UNRELATED.items()):
        _save(_load(src), OUT / "unrelated" / f"{stem}.jpg")
    n = sum(1 for _ in OUT.rglob("*") if _.is_file())
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{n} files, {size / 1e6:.1f} MB in {OUT}")


if __name__ == "__main__":
    main()
