"""Train the brand-agnostic logo-region head (`benchmarks/research/logo_head.npz`) over frozen
EfficientNet-Lite0 cells.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/research/train_logo_head.py [--data DIR] [--fold I --folds K]

What it learns: a linear map of backbone cells under which a photo window showing a logo is
closer to that logo's reference renderings than to any other brand's or to a learned
"background" prototype (softmax over all renderings + background, several positives per
brand). Brands come and go as logo files, so nothing is per-brand: training pairs are
(a) real photo regions (FlickrLogos boxes of the dev set) against their brand's references,
(b) synthetic composites: every enrolled reference logo (distractor brands included) pasted
    with random size, perspective, colour, blur and JPEG into photo backgrounds,
(c) background windows (no box overlap) against the background prototype.
`--fold I --folds K` holds out every K-th brand that has photos (I-th share): their photos
AND their reference logos are kept out of (a)-(c), so the figures on them measure brands the
head never saw. The GroceryStore "no_logo" photos are never used (they are the negatives of
the evaluation). Backbone outputs are cached (`--cache`) so folds only retrain the head.
Pure numpy (the PyPI torch wheel is a CUDA build); ~1 min data prep + ~1 min per fold, 1 thread.
"""
from __future__ import annotations

import argparse
import tempfile
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.research.logo_head import LogoHead, pool_windows, reference_renders, windows  # noqa: E402
from brand_signals.images.logo_geometry import glyph_mask, tight_crop  # noqa: E402
from models.embedder import QUERY_SIDE, STRIDE, FeatureExtractor, letterbox, normalise, valid_cells  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "eval" / "dev" / "logos"
SEED = 20261128
DIM = 128
SCALE = 16.0          # cosine-softmax temperature (a usual value for normalised embeddings)
STEPS = 1800
BATCH = 256
LR = 2e-3
POS_IOU = 0.3         # a window counts as showing a box from this IoU (best window per box)
EXTRA_POS_IOU = 0.5   # further positives per box
NEG_PER_PHOTO = 24    # background windows sampled per photo
SYN_PER_LOGO = 6      # synthetic composites per reference logo file
MINE_AT = (400, 800, 1200)   # steps at which hard background windows are mined
HARD_PER_PHOTO = 8


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def box_iou(wins_px: np.ndarray, box: np.ndarray) -> np.ndarray:
    x1 = np.maximum(wins_px[:, 0], box[0]); y1 = np.maximum(wins_px[:, 1], box[1])
    x2 = np.minimum(wins_px[:, 2], box[2]); y2 = np.minimum(wins_px[:, 3], box[3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    a = (wins_px[:, 2] - wins_px[:, 0]) * (wins_px[:, 3] - wins_px[:, 1])
    b = (box[2] - box[0]) * (box[3] - box[1])
    return inter / np.maximum(a + b - inter, 1e-6)


def win_px(wins: np.ndarray) -> np.ndarray:
    return np.stack([wins[:, 0], wins[:, 1], wins[:, 0] + wins[:, 2], wins[:, 1] + wins[:, 3]], 1).astype(
        np.float32) * STRIDE


def region_samples(feat: np.ndarray, hw: tuple[int, int], boxes_px: list[np.ndarray], rng, n_neg: int):
    """Pooled 1280-d features of the windows that show each box (best + good ones) and of
    background windows. boxes are in letterboxed canvas pixels."""
    cells = feat.transpose(1, 2, 0)
    vh, vw = valid_cells(*hw)
    wins = windows(cells.shape[0], cells.shape[1], vh, vw)
    wpx = win_px(wins)
    pos_idx, pos_box = [], []
    max_iou = np.zeros(len(wins), np.float32)
    for bi, b in enumerate(boxes_px):
        iou = box_iou(wpx, b)
        max_iou = np.maximum(max_iou, iou)
        best = int(iou.argmax())
        if iou[best] >= POS_IOU:
            pos_idx.append(best); pos_box.append(bi)
            for j in np.nonzero(iou >= EXTRA_POS_IOU)[0][:3]:
                if j != best:
                    pos_idx.append(int(j)); pos_box.append(bi)
    neg = np.nonzero(max_iou == 0)[0]
    neg = rng.choice(neg, size=min(n_neg, len(neg)), replace=False) if len(neg) else neg
    pos_f = pool_windows(cells, wins[pos_idx]) if pos_idx else np.zeros((0, cells.shape[2]), np.float32)
    neg_f = pool_windows(cells, wins[neg]) if len(neg) else np.zeros((0, cells.shape[2]), np.float32)
    return pos_f, pos_box, neg_f


def composite(bg: np.ndarray, logo: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Paste an augmented logo into a QUERY_SIDE canvas made from `bg`; returns canvas, box."""
    canvas, _ = letterbox(bg, QUERY_SIDE)
    logo = tight_crop(logo)
    mask = glyph_mask(logo)
    mode = rng.integers(3)
    if mode == 1 and mask.any():        # glyph only, recoloured
        colour = rng.choice([np.array([255, 255, 255]), np.array([0, 0, 0]), np.median(logo[mask], 0),
                             rng.integers(0, 256, 3)])
        patch = np.empty_like(logo); patch[:] = np.asarray(colour, np.uint8)
        alpha = mask.astype(np.float32)
    elif mode == 2 and mask.any():      # glyph only, own colours
        patch, alpha = logo, mask.astype(np.float32)
    else:                               # the whole rendering (a sticker, a sign)
        patch, alpha = logo, np.ones(mask.shape, np.float32)
    side = rng.uniform(40, 220)
    h, w = patch.shape[:2]
    s = side / max(h, w)
    nh, nw = max(8, int(h * s)), max(8, int(w * s))
    patch = cv2.resize(patch, (nw, nh), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(alpha, (nw, nh), interpolation=cv2.INTER_LINEAR)
    # perspective: jitter the corners by up to 15 % of the size
    src = np.float32([[0, 0], [nw, 0], [nw, nh], [0, nh]])
    dst = src + rng.uniform(-0.15, 0.15, (4, 2)).astype(np.float32) * np.float32([nw, nh])
    dst -= dst.min(0)
    ow, oh = int(np.ceil(dst[:, 0].max())) + 1, int(np.ceil(dst[:, 1].max())) + 1
    m = cv2.getPerspectiveTransform(src, dst)
    patch = cv2.warpPerspective(patch, m, (ow, oh), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpPerspective(alpha, m, (ow, oh), flags=cv2.INTER_LINEAR)
    ow, oh = min(ow, QUERY_SIDE - 1), min(oh, QUERY_SIDE - 1)
    patch, alpha = patch[:oh, :ow], alpha[:oh, :ow]
    x0 = int(rng.integers(0, QUERY_SIDE - ow)); y0 = int(rng.integers(0, QUERY_SIDE - oh))
    roi = canvas[y0:y0 + oh, x0:x0 + ow].astype(np.float32)
    gain = rng.uniform(0.6, 1.2); bias = rng.uniform(-30, 30)
    p = np.clip(patch.astype(np.float32) * gain + bias, 0, 255)
    canvas[y0:y0 + oh, x0:x0 + ow] = (roi * (1 - alpha[..., None]) + p * alpha[..., None]).astype(np.uint8)
    if rng.random() < 0.3:
        canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.5, 1.5))
    ok, enc = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
    canvas = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    return canvas, np.float32([x0, y0, x0 + ow, y0 + oh])


def prepare(data: Path, cache: Path, threads: int) -> dict:
    rng = np.random.default_rng(SEED)
    fe = FeatureExtractor(threads=threads, batch_size=8)
    brands = [json.loads(x) for x in (data / "brands.jsonl").read_text().splitlines() if x.strip()]
    labels = {r["listing_id"]: r for r in map(json.loads, (data / "labels.jsonl").read_text().splitlines())}
    boxes = {r["listing_id"]: r for r in map(json.loads, (data / "boxes.jsonl").read_text().splitlines())}
    t0 = time.perf_counter()
    # reference renderings
    ref_f, ref_brand, logos = [], [], []
    for b in brands:
        for lg in b.get("logos") or ():
            rgb = read_rgb(data / lg["uri"])
            logos.append((b["brand_id"], rgb))
            renders = reference_renders(rgb)
            feats = fe.features([c for c, _ in renders])
            for f, (_, win) in zip(feats, renders):
                ref_f.append(pool_windows(f.transpose(1, 2, 0), np.int32([win]))[0])
                ref_brand.append(b["brand_id"])
    print(f"references: {len(ref_f)} renderings of {len(logos)} logos ({time.perf_counter() - t0:.0f} s)")
    # real photo regions
    pos_f, pos_brand, pos_photo, neg_f, neg_photo = [], [], [], [], []
    backgrounds, maps, map_hw, map_boxes, map_brand = [], [], [], [], []
    for lid, row in boxes.items():
        lab = labels[lid]
        rgb = read_rgb(data / row["image"])
        canvas, scale = letterbox(rgb, QUERY_SIDE)
        feat = fe.features([canvas])[0]
        bx = [np.float32([b["x1"], b["y1"], b["x2"], b["y2"]]) * scale for b in row["boxes"]]
        pf, pb, nf = region_samples(feat, rgb.shape[:2], bx, rng, NEG_PER_PHOTO)
        for f, bi in zip(pf, pb):
            pos_f.append(f); pos_brand.append(row["boxes"][bi]["brand_id"]); pos_photo.append(lab["brand_id"])
        neg_f.extend(nf); neg_photo.extend([lab["brand_id"]] * len(nf))
        backgrounds.append((lab["brand_id"], rgb, bx, scale))
        maps.append(feat.astype(np.float16)); map_hw.append(rgb.shape[:2]); map_brand.append(lab["brand_id"])
        map_boxes.append(np.pad(np.float32(bx).reshape(-1, 4), ((0, max(0, 48 - len(bx))), (0, 0)), constant_values=-1)[:48])
    print(f"photos: {len(pos_f)} positive windows, {len(neg_f)} background windows ({time.perf_counter() - t0:.0f} s)")
    # synthetic composites: every reference logo into backgrounds of photos
    syn_f, syn_brand, syn_bgbrand = [], [], []
    for brand_id, rgb in logos:
        for _ in range(SYN_PER_LOGO):
            bg_brand, bg, _, _ = backgrounds[int(rng.integers(len(backgrounds)))]
            canvas, box = composite(bg, rgb, rng)
            feat = fe.features([canvas])[0]
            pf, _, _ = region_samples(feat, (QUERY_SIDE, QUERY_SIDE), [box], rng, 0)
            if len(pf):
                syn_f.append(pf[0]); syn_brand.append(brand_id); syn_bgbrand.append(bg_brand)
    print(f"synthetic: {len(syn_f)} composites ({time.perf_counter() - t0:.0f} s)")
    out = dict(ref_f=np.float32(ref_f), ref_brand=np.array(ref_brand), pos_f=np.float32(pos_f),
               pos_brand=np.array(pos_brand), pos_photo=np.array(pos_photo), neg_f=np.float32(neg_f),
               neg_photo=np.array(neg_photo), syn_f=np.float32(syn_f), syn_brand=np.array(syn_brand),
               syn_bgbrand=np.array(syn_bgbrand), maps=np.stack(maps), map_hw=np.int32(map_hw),
               map_boxes=np.stack(map_boxes), map_brand=np.array(map_brand))
    np.savez(cache, **out)
    return out


def holdout_brands(d: dict, fold: int, folds: int) -> list[str]:
    photo_brands = sorted(set(d["pos_brand"].tolist()) & set(d["ref_brand"].tolist()))
    return photo_brands[fold::folds] if folds > 1 else []


class Adam:
    def __init__(self, shapes, lr):
        self.m = [np.zeros(s, np.float32) for s in shapes]
        self.v = [np.zeros(s, np.float32) for s in shapes]
        self.t, self.lr = 0, lr

    def step(self, params, grads):
        self.t += 1
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= 0.9; m += 0.1 * g
            v *= 0.999; v += 0.001 * g * g
            p -= self.lr * (m / (1 - 0.9 ** self.t)) / (np.sqrt(v / (1 - 0.999 ** self.t)) + 1e-8)


def _norm_fwd(u):
    n = np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-6)
    return u / n, n


def _norm_bwd(z, n, dz):
    return (dz - z * (z * dz).sum(-1, keepdims=True)) / n


def mine_hard_negatives(d: dict, held: list[str], W, g, mu, sd, per_photo: int) -> np.ndarray:
    """Background windows (no overlap with any box) that the current head scores closest to a
    brand rendering relative to the background prototype, over every window of every photo:
    at inference the max over ~2,000 windows per photo is what causes false positives."""
    out = []
    keep = ~np.isin(d["map_brand"], held)
    Wf = W / sd[:, None]
    b = -(mu / sd) @ W
    R = normalise(((d["ref_f"][~np.isin(d["ref_brand"], held)] - mu) / sd) @ W)
    gz = normalise(g)
    for fm, hw, bx in zip(d["maps"][keep], d["map_hw"][keep], d["map_boxes"][keep]):
        fm = fm.astype(np.float32)
        c, h, w = fm.shape
        flat = fm.reshape(c, -1).T
        cells = (flat @ Wf + b).reshape(h, w, -1)
        vh, vw = valid_cells(*hw)
        wins = windows(h, w, vh, vw)
        wpx = win_px(wins)
        ov = np.zeros(len(wins), bool)
        for box in bx:
            if box[0] >= 0:
                ov |= box_iou(wpx, box) > 0
        cand = np.nonzero(~ov)[0]
        if not len(cand):
            continue
        e = normalise(pool_windows(cells, wins[cand]))
        margin = (e @ R.T).max(1) - e @ gz
        pick = cand[np.argsort(-margin)[:per_photo]]
        out.append(pool_windows(fm.transpose(1, 2, 0), wins[pick]))
    return np.concatenate(out) if out else np.zeros((0, d["neg_f"].shape[1]), np.float32)


def train(d: dict, held: list[str], steps: int, seed: int) -> tuple[LogoHead, dict]:
    rng = np.random.default_rng(seed)
    rmask = ~np.isin(d["ref_brand"], held)
    ref_f, ref_brand = d["ref_f"][rmask], d["ref_brand"][rmask]
    pmask = ~np.isin(d["pos_brand"], held) & ~np.isin(d["pos_photo"], held)
    smask = ~np.isin(d["syn_brand"], held) & ~np.isin(d["syn_bgbrand"], held)
    nmask = ~np.isin(d["neg_photo"], held)
    # positives only for brands with references (word-mark-only brands have none to match)
    has_ref = set(ref_brand.tolist())
    pmask &= np.isin(d["pos_brand"], list(has_ref))
    q_f = np.concatenate([d["pos_f"][pmask], d["syn_f"][smask]])
    q_brand = np.concatenate([d["pos_brand"][pmask], d["syn_brand"][smask]])
    is_real = np.concatenate([np.ones(pmask.sum(), bool), np.zeros(smask.sum(), bool)])
    n_f = d["neg_f"][nmask]
    brands = sorted(has_ref)
    bidx = {b: i for i, b in enumerate(brands)}
    ref_b = np.array([bidx[b] for b in ref_brand])
    q_b = np.array([bidx[b] for b in q_brand])
    # feature standardisation is folded into W at the end; PCA init
    allf = np.concatenate([ref_f, q_f, n_f])
    mu = allf.mean(0)
    sd = allf.std(0) + 1e-3
    x = (allf - mu) / sd
    _, _, vt = np.linalg.svd(x[rng.choice(len(x), min(len(x), 6000), replace=False)], full_matrices=False)
    W = (vt[:DIM].T / np.sqrt(len(x))).astype(np.float32) * 10
    g = rng.normal(size=DIM).astype(np.float32)
    R = ((ref_f - mu) / sd).astype(np.float32)
    Q = ((q_f - mu) / sd).astype(np.float32)
    N = ((n_f - mu) / sd).astype(np.float32)
    opt = Adam([W.shape, g.shape], LR)
    onehot_ref = (ref_b[None, :] == np.arange(len(brands))[:, None]).astype(np.float32)  # [B, R]
    print(f"training on {len(brands)} brands ({len(held)} held out: {held}); "
          f"{int(is_real.sum())} real + {int((~is_real).sum())} synthetic positives, {len(N)} background")
    for step in range(steps):
        if step in MINE_AT:
            hard = mine_hard_negatives(d, held, W, g, mu, sd, HARD_PER_PHOTO)
            N = np.concatenate([N, ((hard - mu) / sd).astype(np.float32)])
            print(f"  step {step}: mined {len(hard)} hard background windows (now {len(N)})")
        npos = BATCH // 2
        pi = rng.integers(len(Q), size=npos)
        ni = rng.integers(len(N), size=BATCH - npos)
        X = np.concatenate([Q[pi], N[ni]])
        # dropout-like feature noise against over-fitting to the few real photos
        X = X * (rng.random(X.shape) > 0.1).astype(np.float32) / 0.9
        pos_mask = np.zeros((BATCH, len(R) + 1), np.float32)
        pos_mask[:npos, :len(R)] = onehot_ref[q_b[pi]]
        pos_mask[npos:, len(R)] = 1
        u = X @ W; z, zn = _norm_fwd(u)
        v = R @ W; p, pn = _norm_fwd(v)
        gz, gn = _norm_fwd(g[None])
        P = np.concatenate([p, gz])
        logits = SCALE * z @ P.T
        logits -= logits.max(1, keepdims=True)
        e = np.exp(logits)
        sm_all = e / e.sum(1, keepdims=True)
        ep = e * pos_mask
        sm_pos = ep / ep.sum(1, keepdims=True)
        loss = float(np.mean(-np.log((sm_all * pos_mask).sum(1) + 1e-12)))
        G = (sm_all - sm_pos) / BATCH * SCALE          # dL/dlogits / SCALE folded
        dz = G @ P
        dP = G.T @ z
        du = _norm_bwd(z, zn, dz)
        dv = _norm_bwd(p, pn, dP[:len(R)])
        dg = _norm_bwd(gz, gn, dP[len(R):])[0]
        dW = X.T @ du + R.T @ dv
        opt.step([W, g], [dW, dg])
        if step % 250 == 0 or step == steps - 1:
            print(f"  step {step:5d} loss {loss:.3f}")
    # fold the standardisation in: (f - mu)/sd @ W == f @ (W/sd) - (mu/sd) @ W; the constant
    # offset is the same for every cell, so it is kept as a bias added after pooling... a
    # linear head with a bias still commutes with mean pooling: store it as an extra row.
    Wf = (W / sd[:, None]).astype(np.float32)
    bias = -(mu / sd) @ W
    head = LogoHead(np.concatenate([Wf, bias[None].astype(np.float32)]), normalise(g).astype(np.float32),
                    SCALE, {"held_out": np.array(held if held else [""]), "dim": DIM, "steps": steps})
    return head, {"brands": brands}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "zeroscan_logo_train.npz")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--folds", type=int, default=1, help="1 = train on every brand (the shipped head)")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    cv2.setNumThreads(a.threads)
    if a.cache.exists():
        with np.load(a.cache) as z:
            d = {k: z[k] for k in z.files}
    else:
        d = prepare(a.data, a.cache, a.threads)
    held = holdout_brands(d, a.fold, a.folds)
    head, _ = train(d, held, a.steps, SEED + a.fold)
    out = a.out or (Path(__file__).resolve().parent / ("logo_head.npz" if a.folds == 1
                                                       else f"logo_head_fold{a.fold}of{a.folds}.npz"))
    head.save(out)
    print(f"-> {out} ({out.stat().st_size / 1e3:.0f} kB); held out: {held}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
