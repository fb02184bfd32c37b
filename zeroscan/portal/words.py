"""What the portal shows, in words and pictures: a signal's evidence as a sentence, a title with
the matched text marked, the accuracy trend as an inline SVG chart. Everything returned is
escaped (markupsafe) except the markup built here."""
from __future__ import annotations

import re
import time
from typing import Any, Iterable

from markupsafe import Markup, escape

_FIELDS = {"title": "The title", "description": "The description", "bullets": "A bullet point",
           "brand": "The listing's brand field", "ocr_text": "Text read from an image"}

OUTCOMES = {
    "removal_accepted": ("taken down", "ok"),
    "removal_demoted": ("sent to review (self-service removal is suspended)", "warn"),
    "removal_held": ("held for a reviewer", "warn"),
    "removal_refused": ("refused", "bad"),
    "appeal_upheld": ("reinstated on appeal (counts against your accuracy)", "bad"),
    "appeal_rejected": ("appeal rejected: the removal stands", "ok"),
}


def _q(s: Any) -> Markup:
    return Markup("“<mark>{}</mark>”").format(s)


def _norms(d: dict) -> Markup:
    n = [x for x in d.get("normalisations") or () if x]
    return Markup(" (read through {})").format(", ".join(n)) if n else Markup("")


def signal_words(sig: dict[str, Any]) -> Markup:
    """One signal of a decision as a plain sentence."""
    kind, d = sig.get("kind", ""), sig.get("detail") or {}
    if kind in ("trademark_text", "brand_field", "ocr_text"):
        where = _FIELDS.get(d.get("field", ""), "The listing")
        if kind == "ocr_text" and d.get("image_uri"):
            where = Markup("Text read from image {}").format(_short(d["image_uri"]))
        out = Markup("{} contains {}, which matches your mark “{}”{}.").format(
            where, _q(d.get("matched", "")), d.get("mark", ""), _norms(d))
        if d.get("category_mismatch"):
            out += Markup(" The listing's category is not one of your brand's.")
        return out
    if kind == "logo":
        how = []
        if "probability" in d:
            how.append(f"the logo model is {100 * float(d['probability']):.0f} % sure")
        if "inliers" in d:
            how.append(f"{d['inliers']} matching shape points")
        return Markup("Image {} shows your logo ({}).").format(_short(d.get("image_uri", "")), "; ".join(how) or "seen")
    if kind == "image_copy":
        how = (f"perceptual-hash distance {d['pdq_distance']}" if d.get("pdq_distance") is not None
               else f"similarity {float(d.get('similarity') or 0):.2f}")
        return Markup("Image {} is a copy of your product photo ({}).").format(_short(d.get("image_uri", "")), how)
    if kind == "price":
        return Markup("Priced {} {}, below your price floor of {} {}.").format(
            d.get("amount"), d.get("currency"), d.get("min_price"), d.get("currency"))
    if kind == "seller":
        if d.get("confirmed_removals_for_brand"):
            return Markup("Seller {} already had {} confirmed removal(s) for your brand.").format(
                d.get("seller_id"), d["confirmed_removals_for_brand"])
        return Markup("Seller {} is not one of your authorized sellers.").format(d.get("seller_id"))
    if kind == "brand_removal":
        if d.get("held"):
            return Markup("You asked for its removal; held for a reviewer: {}.").format(d["held"])
        if d.get("suspended"):
            return Markup("You asked for its removal; sent to review because self-service removal is suspended "
                          "(accuracy {:.0f} %).").format(100 * float(d.get("accuracy") or 0))
        if d.get("reinstated"):
            return Markup("Reinstated on appeal.")
        return Markup("Removed at your request.")
    if kind == "feedback_neighbor":
        via = "the same image" if d.get("via") == "image" else "a near-identical title"
        return Markup("A near-copy of listing {} that you removed ({}, similarity {:.2f}).").format(
            d.get("removed_listing_id"), via, float(d.get("similarity") or 0))
    if kind == "image_error":
        return Markup("Image {} could not be looked at: {}.").format(_short(d.get("image_uri", "")), d.get("reason"))
    return Markup("{}: {}").format(kind, d)


def _short(uri: str, n: int = 60) -> str:
    if uri.startswith("check-"):           # the photo uploaded to "check a listing"
        return "(your photo)"
    return uri if len(uri) <= n else uri[: n - 1] + "…"


def matched_texts(signals: Iterable[dict[str, Any]], field: str = "title") -> list[str]:
    return [s["detail"]["matched"] for s in signals
            if isinstance(s.get("detail"), dict) and s["detail"].get("field") == field and s["detail"].get("matched")]


def mark_text(text: str, matched: Iterable[str]) -> Markup:
    """`text` escaped, with every occurrence of a matched surface (case-insensitive) marked."""
    parts = sorted({m for m in matched if m}, key=len, reverse=True)
    if not text or not parts:
        return escape(text)
    pattern = re.compile("|".join(re.escape(p) for p in parts), re.IGNORECASE)
    out, last = Markup(""), 0
    for m in pattern.finditer(text):
        out += escape(text[last:m.start()]) + Markup("<mark>{}</mark>").format(m.group(0))
        last = m.end()
    return out + escape(text[last:])


def when(ms: int | None) -> str:
    if not ms:
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


def trend_svg(trend: list[dict[str, Any]], bar: float, width: int = 560, height: int = 180) -> Markup:
    """Accuracy (0-100 %) at each decided removal, with the bar below which removals are
    suspended, as an inline SVG line chart."""
    left, right, top, bottom = 44, 12, 12, 28
    w, h = width - left - right, height - top - bottom

    def y(acc: float) -> float:
        return top + h * (1.0 - acc)

    parts = [Markup('<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{w}" height="{h}" '
                    'viewBox="0 0 {w} {h}" aria-label="accuracy trend">').format(w=width, h=height)]
    for acc in (0.0, 0.5, 1.0):
        parts.append(Markup('<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" class="grid"/>'
                            '<text x="{}" y="{:.1f}" class="axis">{} %</text>').format(
            left, left + w, y(acc), y(acc), left - 6, y(acc) + 4, int(acc * 100)))
    parts.append(Markup('<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" class="bar"/>'
                        '<text x="{}" y="{:.1f}" class="barlabel">bar {:.0f} %</text>').format(
        left, left + w, y(bar), y(bar), left + w - 4, y(bar) - 4, bar * 100))
    if not trend:
        parts.append(Markup('<text x="{}" y="{}" class="empty">no decided removals yet</text>').format(
            left + w / 2, top + h / 2))
    else:
        t0, t1 = trend[0]["event_time"], trend[-1]["event_time"]
        span = max(1, t1 - t0)

        def x(i: int, t: int) -> float:
            return left + (w * (t - t0) / span if t1 > t0 else w * (i + 0.5) / len(trend))

        pts = " ".join(f"{x(i, p['event_time']):.1f},{y(p['accuracy']):.1f}" for i, p in enumerate(trend))
        parts.append(Markup('<polyline points="{}" class="line"/>').format(pts))
        for i, p in enumerate(trend):
            parts.append(Markup('<circle cx="{:.1f}" cy="{:.1f}" r="3" class="dot"><title>{}: {:.0f} % of {}'
                                '</title></circle>').format(x(i, p["event_time"]), y(p["accuracy"]),
                                                            when(p["event_time"]), 100 * p["accuracy"], p["decided"]))
        parts.append(Markup('<text x="{}" y="{}" class="axis start">{}</text><text x="{}" y="{}" class="axis end">'
                            '{}</text>').format(left, height - 8, when(t0), left + w, height - 8, when(t1)))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)
