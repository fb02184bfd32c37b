"""Edited copies of official product photos, made with AugLy (Meta's augmentation library,
`augly` 1.0.0 on PyPI, its own emoji, font and screenshot-template assets), for measuring how
well copies of a brand's photos are found, per transformation.

    .venv/bin/python benchmarks/make_photo_copies.py [--data DEV_LOGOS] [--out DIR] [--seed N]

The dev logo photos stand in as "official product photos": FlickrLogos-27 photos (a brand's
shirt, can, car, sign) and GroceryStoreDataset shelf photos (fruit and vegetables, one class
per folder). Brands and classes are split in two: half are *enrolled* (a few photos each
become that brand's `product_images`), the other half are *distractors* (photos of other
products, never enrolled). Every enrolled and distractor photo is edited by every
transformation in TRANSFORMS (AugLy's, except the off-axis view: OpenCV, see _perspective),
with parameters drawn from a generator seeded by (seed, photo,
transformation); an edit of an enrolled photo should be found for its brand, an edit of a
distractor photo should not be found at all. Writes, under DIR (default
benchmarks/results/tmp/photo_copies, not committed; about 60 MB, ~15 s):

    brands.jsonl     enrolled brands (contract brand records; product_images under official/)
    official/        the enrolled photos as the brands would submit them
    images/          the edited copies (JPEG)
    listings.jsonl   one listing per copy (contract listing records, title "Item N")
    labels.jsonl     {listing_id, brand_id (null for distractors), infringing, transform, source}
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev" / "logos"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "tmp" / "photo_copies"
SEED = 20261202
FLICKR_PER_BRAND = 3          # photos per FlickrLogos brand (enrolled or distractor)
GROCERY_CLASSES = 40          # grocery classes on each side, one photo each

WORDS = ("best price", "original", "sale", "new arrival", "free shipping", "limited", "hot deal",
         "100% genuine", "top quality", "buy now", "when you see it", "me irl", "mood", "LOL")


def _pillow_compat() -> None:
    """augly 1.0.0 measures text with FreeTypeFont.getsize / getsize_multiline, which Pillow 10
    removed: the same sizes from getbbox / multiline_textbbox (origin at 0, 0)."""
    from PIL import ImageDraw, ImageFont
    font_cls = ImageFont.FreeTypeFont
    if not hasattr(font_cls, "getsize"):
        font_cls.getsize = lambda self, text, *a, **k: tuple(self.getbbox(text)[2:])
    if not hasattr(font_cls, "getsize_multiline"):
        font_cls.getsize_multiline = lambda self, text, *a, **k: tuple(
            ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox((0, 0), text, font=self)[2:])


def _text(rng: random.Random) -> str:
    return " ".join(rng.sample(WORDS, rng.randint(1, 2)))


def _font_and_glyphs(rng: random.Random) -> tuple[str, list[int]]:
    """A Latin font shipped with augly and the indices of its characters for `text`."""
    import pickle

    from augly.utils import FONTS_DIR
    font = Path(FONTS_DIR) / rng.choice(["Raleway-ExtraBold.ttf", "Chunkfive.ttf", "Caviar_Dreams_Bold.ttf"])
    with open(font.with_suffix(".pkl"), "rb") as f:
        chars = pickle.load(f)
    wanted = _text(rng).upper()
    return str(font), [chars.index(ord(c)) for c in wanted if ord(c) in chars]   # the pkl lists code points


def _emoji(rng: random.Random) -> str:
    from augly.utils import EMOJI_DIR
    files = sorted(Path(EMOJI_DIR).rglob("*.png"))
    return str(rng.choice(files))


def _screenshot(rng: random.Random) -> dict:
    from augly.utils import SCREENSHOT_TEMPLATES_DIR
    return {"template_filepath": str(Path(SCREENSHOT_TEMPLATES_DIR) / rng.choice(["web.png", "mobile.png"])),
            "template_bboxes_filepath": str(Path(SCREENSHOT_TEMPLATES_DIR) / "bboxes.json")}


def _crop(rng: random.Random) -> dict:
    w, h = rng.uniform(0.5, 0.8), rng.uniform(0.5, 0.8)
    x1, y1 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
    return {"x1": x1, "y1": y1, "x2": x1 + w, "y2": y1 + h}


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randint(0, 255) for _ in range(3))  # type: ignore[return-value]


def _perspective(img: Image.Image, rng: random.Random) -> Image.Image:
    """The photo seen off-axis: each corner moved inwards by up to 20 % of the side."""
    import cv2
    import numpy as np
    rgb = np.asarray(img)
    h, w = rgb.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = np.float32([[rng.uniform(0, 0.2) * w, rng.uniform(0, 0.2) * h] for _ in range(4)])
    dst = src + jitter * np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    m = cv2.getPerspectiveTransform(src, dst)
    return Image.fromarray(cv2.warpPerspective(rgb, m, (w, h), borderValue=(255, 255, 255)))


def _apply(name: str, img: Image.Image, rng: random.Random) -> Image.Image:
    import augly.image as A
    _pillow_compat()
    if name == "identity":
        return img
    if name == "resize":
        return A.scale(img, factor=rng.uniform(0.4, 0.7))
    if name == "blur":
        return A.blur(img, radius=rng.uniform(1.0, 3.0))
    if name == "colour":
        return A.color_jitter(img, brightness_factor=rng.uniform(0.6, 1.4), contrast_factor=rng.uniform(0.6, 1.4),
                              saturation_factor=rng.uniform(0.3, 1.7))
    if name == "jpeg":
        return A.encoding_quality(img, quality=rng.randint(10, 30))
    if name == "crop":
        return A.crop(img, **_crop(rng))
    if name == "pad":
        return A.pad(img, w_factor=rng.uniform(0.2, 0.6), h_factor=rng.uniform(0.2, 0.6), color=_colour(rng))
    if name == "rotate":
        return A.rotate(img, degrees=rng.choice([-1, 1]) * rng.uniform(10, 45))
    if name == "hflip":
        return A.hflip(img)
    if name == "perspective":      # augly 1.0.0's perspective_transform needs numpy < 1.24: OpenCV here
        return _perspective(img, rng)
    if name == "meme_frame":
        return A.meme_format(img, text=_text(rng), caption_height=int(img.height * rng.uniform(0.2, 0.45)),
                             meme_bg_color=_colour(rng), text_color=(0, 0, 0))
    if name == "screenshot_frame":
        return A.overlay_onto_screenshot(img, **_screenshot(rng))
    if name == "emoji_overlay":
        return A.overlay_emoji(img, emoji_path=_emoji(rng), emoji_size=rng.uniform(0.2, 0.4),
                               x_pos=rng.uniform(0, 0.6), y_pos=rng.uniform(0, 0.6))
    if name == "text_overlay":
        font, glyphs = _font_and_glyphs(rng)
        return A.overlay_text(img, text=glyphs, font_file=font, font_size=rng.uniform(0.1, 0.2),
                              color=_colour(rng), x_pos=rng.uniform(0, 0.3), y_pos=rng.uniform(0.1, 0.7))
    if name == "crop_flip_text":            # edits stacked, as a copier would
        img = A.hflip(A.crop(img, **_crop(rng)))
        font, glyphs = _font_and_glyphs(rng)
        return A.overlay_text(img, text=glyphs, font_file=font, font_size=rng.uniform(0.1, 0.2),
                              color=_colour(rng), x_pos=rng.uniform(0, 0.3), y_pos=rng.uniform(0.1, 0.7))
    raise ValueError(name)


TRANSFORMS = ("identity", "resize", "blur", "colour", "jpeg", "crop", "pad", "rotate", "hflip", "perspective",
              "meme_frame", "screenshot_frame", "emoji_overlay", "text_overlay", "crop_flip_text")


def split(labels: list[dict], seed: int) -> tuple[list[tuple[str, dict]], list[dict]]:
    """(enrolled (brand_id, label row), distractor rows): FlickrLogos brands and grocery
    classes alternate between the two sides in sorted order; photos drawn with `seed`."""
    rng = random.Random(f"{seed}|split")
    flickr: dict[str, list[dict]] = {}
    grocery: dict[str, list[dict]] = {}
    for r in labels:
        if r["variant"] == "logo_photo":
            flickr.setdefault(r["brand_id"], []).append(r)
        elif r["variant"] == "no_logo":
            parts = r["source"].split(":", 1)[1].split("/")
            grocery.setdefault("-".join(parts[3:-1]).lower(), []).append(r)
    enrolled: list[tuple[str, dict]] = []
    distractors: list[dict] = []
    for i, b in enumerate(sorted(flickr)):
        rows = rng.sample(sorted(flickr[b], key=lambda r: r["listing_id"]), FLICKR_PER_BRAND)
        if i % 2 == 0:
            enrolled += [(f"{b}-store", r) for r in rows]
        else:
            distractors += rows
    classes = sorted(grocery)
    for i, c in enumerate(classes[:2 * GROCERY_CLASSES]):
        r = rng.choice(sorted(grocery[c], key=lambda r: r["listing_id"]))
        if i % 2 == 0:
            enrolled.append((f"grocer-{c}", r))
        else:
            distractors.append(r)
    return enrolled, distractors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--transforms", default=",".join(TRANSFORMS))
    a = ap.parse_args(argv)
    transforms = [t for t in a.transforms.split(",") if t]
    labels = [json.loads(x) for x in (a.data / "labels.jsonl").read_text().splitlines() if x.strip()]
    uri_of = {json.loads(x)["listing_id"]: json.loads(x)["images"][0]["uri"]
              for x in (a.data / "listings.jsonl").read_text().splitlines() if x.strip()}
    enrolled, distractors = split(labels, a.seed)
    if a.out.exists():
        shutil.rmtree(a.out)
    (a.out / "official").mkdir(parents=True)
    (a.out / "images").mkdir()
    brands: dict[str, list[dict]] = {}
    for brand_id, r in enrolled:
        src = a.data / uri_of[r["listing_id"]]
        dst = a.out / "official" / f"{brand_id}-{r['listing_id']}.jpg"
        shutil.copyfile(src, dst)
        brands.setdefault(brand_id, []).append(
            {"uri": f"official/{dst.name}", "sha256": hashlib.sha256(dst.read_bytes()).hexdigest()})
    with open(a.out / "brands.jsonl", "w") as f:
        for b, photos in sorted(brands.items()):
            f.write(json.dumps({"brand_id": b, "name": b, "trademarks": [b], "product_images": photos,
                                "authorized_sellers": [f"auth-{b}"], "enforcement": "takedown", "version": 1}) + "\n")
    rows = [(b, r) for b, r in enrolled] + [(None, r) for r in distractors]
    n = 0
    with open(a.out / "listings.jsonl", "w") as fl, open(a.out / "labels.jsonl", "w") as fb:
        for brand_id, r in rows:
            with Image.open(a.data / uri_of[r["listing_id"]]) as im:
                photo = im.convert("RGB")
            for t in transforms:
                rng = random.Random(f"{a.seed}|{r['listing_id']}|{t}")
                out = _apply(t, photo, rng).convert("RGB")
                n += 1
                lid = f"pc-{n:05d}"
                path = a.out / "images" / f"{lid}.jpg"
                out.save(path, quality=rng.randint(75, 92))
                fl.write(json.dumps({"listing_id": lid, "seller_id": f"s-{n % 97}", "event_time": 1764633600000 + n,
                                     "op": "upsert", "title": f"Item {n}",
                                     "images": [{"uri": f"images/{lid}.jpg",
                                                 "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}]}) + "\n")
                fb.write(json.dumps({"listing_id": lid, "brand_id": brand_id, "infringing": brand_id is not None,
                                     "transform": t, "source": r["source"]}) + "\n")
    print(f"{len(brands)} enrolled brands, {len(enrolled)} official photos, {len(distractors)} distractor photos, "
          f"{len(transforms)} transformations: {n} listings -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
