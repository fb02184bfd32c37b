"""Builds benchmarks/data/japanese/: a small labelled set of Japanese marketplace titles in the
contract's formats (brands / listings / labels JSONL), written the way Japanese marketplaces
write brand names: katakana renderings (ナイキ, ソニー, キヤノン), full-width and half-width
forms (ＮＩＫＥ, ﾅｲｷ), kanji marks (東芝), their disguises (small kana, long-vowel marks,
middle dots), Japanese compatibility phrasing (対応, 互換, 用, 専用, 適合, 向け) and honest
negatives (ordinary katakana words that contain a mark's kana: モデル, シャープペンシル).

    .venv/bin/python benchmarks/make_japanese_set.py

Standard library only; deterministic (seed below). Titles are composed from templates, not
taken from a marketplace: the set measures the rules, not a market's distribution.
"""
from __future__ import annotations

import json
import random
import unicodedata
from pathlib import Path

SEED = 20261202
OUT = Path(__file__).resolve().parent / "data" / "japanese"
BASE_TIME_MS = 1767312000000

# brand_id, Latin mark, Japanese mark(s), products (katakana/kanji nouns), accessories for it
BRANDS = [
    ("sony", "Sony", ["ソニー"], ["ワイヤレスヘッドホン", "デジタルカメラ", "ブルーレイレコーダー"], ["交換用イヤーパッド", "リモコン"]),
    ("nike", "Nike", ["ナイキ"], ["スニーカー", "ランニングシューズ", "スポーツバッグ"], ["靴ひも", "インソール"]),
    ("apple", "Apple", ["アップル"], ["ワイヤレスイヤホン", "タブレット", "スマートウォッチ"], ["充電ケーブル", "保護フィルム"]),
    ("canon", "Canon", ["キヤノン"], ["インクカートリッジ", "一眼レフカメラ", "プリンター"], ["互換インク", "レンズキャップ"]),
    ("epson", "Epson", ["エプソン"], ["インクジェットプリンター", "プロジェクター", "スキャナー"], ["互換インク", "トナー"]),
    ("nikon", "Nikon", ["ニコン"], ["ミラーレスカメラ", "双眼鏡", "交換レンズ"], ["バッテリー", "ストラップ"]),
    ("casio", "Casio", ["カシオ"], ["腕時計", "電子辞書", "関数電卓"], ["替えベルト", "ACアダプター"]),
    ("sharp", "Sharp", ["シャープ"], ["液晶テレビ", "空気清浄機", "電子レンジ"], ["交換フィルター", "リモコン"]),
    ("brother", "Brother", ["ブラザー"], ["ミシン", "ラベルライター", "複合機"], ["互換トナー", "ラベルテープ"]),
    ("dell", "Dell", ["デル"], ["ノートパソコン", "モニター", "デスクトップパソコン"], ["ACアダプター", "交換用バッテリー"]),
    ("buffalo", "Buffalo", ["バッファロー"], ["無線LANルーター", "外付けハードディスク", "USBメモリ"], ["LANケーブル", "ケース"]),
    ("adidas", "adidas", ["アディダス"], ["ジャージ", "サッカースパイク", "リュック"], ["靴ひも", "インソール"]),
    ("kenwood", "Kenwood", ["ケンウッド"], ["カーナビ", "ドライブレコーダー", "ミニコンポ"], ["取付キット", "アンテナ"]),
    ("asics", "ASICS", ["アシックス"], ["ランニングシューズ", "バレーボールシューズ", "トレーニングウェア"], ["インソール", "靴ひも"]),
    ("toshiba", "Toshiba", ["東芝"], ["ノートパソコン", "冷蔵庫", "LED電球"], ["交換用バッテリー", "リモコン"]),
    ("hitachi", "Hitachi", ["日立"], ["掃除機", "洗濯機", "電動工具"], ["紙パック", "交換ブラシ"]),
    ("louis-vuitton", "Louis Vuitton", ["ルイ・ヴィトン"], ["長財布", "ショルダーバッグ", "キーケース"], ["保存袋", "ストラップ"]),
    ("gucci", "Gucci", ["グッチ"], ["サングラス", "ベルト", "トートバッグ"], ["メガネケース", "保存袋"]),
    ("bose", "Bose", ["ボーズ"], ["ノイズキャンセリングヘッドホン", "サウンドバー", "スピーカー"], ["交換用イヤーパッド", "ケース"]),
    ("pioneer", "Pioneer", ["パイオニア"], ["カーオーディオ", "DJコントローラー", "カーナビ"], ["取付キット", "リモコン"]),
    ("logitech", "Logitech", ["ロジクール"], ["ワイヤレスマウス", "キーボード", "ウェブカメラ"], ["レシーバー", "マウスパッド"]),
    ("anker", "Anker", ["アンカー"], ["モバイルバッテリー", "充電器", "ワイヤレス充電器"], ["ケーブル", "ポーチ"]),
]
EXTRAS = ["新品", "正規品", "送料無料", "メンズ", "レディース", "2024年モデル", "ブラック", "ホワイト", "国内正規", "限定"]
# Ordinary katakana (or kanji) words that contain a mark's kana or characters (brand_id, title).
SUBSTRING_NEGATIVES = [
    ("dell", "モデルガン ホルスター 黒"), ("dell", "新モデル 電動歯ブラシ 替えブラシ付き"),
    ("dell", "デルタ翼 ラジコン飛行機 組立キット"), ("dell", "プラモデル 1/24 スポーツカー"),
    ("sharp", "シャープペンシル 0.5mm 10本セット"), ("sharp", "シャープナー 包丁研ぎ 両刃用"),
    ("casio", "カシオペア 星座 図鑑 子供向け"), ("casio", "カシオペヤ座 ポスター A2"),
    ("nike", "ナイキスト周波数 解説書 信号処理入門"),
    ("buffalo", "バッファローウイング 冷凍 1kg"), ("buffalo", "バッファローチェック シャツ 赤黒"),
    ("apple", "アップルパイ 冷凍 6個入り"), ("apple", "アップルミント 苗 3株"), ("apple", "パイナップル 缶詰 3個"),
    ("brother", "ブラザーフッド DVD 特典付き"),
    ("sony", "パナソニック 電子レンジ 22L"), ("sony", "ソニック 電動歯ブラシ 替えブラシ"),
    ("anker", "アンカーボルト M12 10本入り"), ("anker", "アンカープラグ 石膏ボード用 50個"),
    ("toshiba", "東芝浦 散策 ガイドブック"), ("hitachi", "日立市 観光 マップ"),
    ("nikon", "ニコンビニ 限定 お菓子セット"), ("gucci", "グッチョコ 詰め合わせ"),
    ("bose", "ボーズヘッド マネキン ウィッグ用"), ("pioneer", "パイオニアスピリット ビジネス書"),
    ("asics", "アシックスター 植物 種"), ("epson", "エプソンサイト 解説"),
    ("kenwood", "ケンウッドチェア 木製 ダイニング"),
]
CLEAN = [
    "ステンレス 水筒 500ml 保冷 保温", "木製 まな板 天然木 抗菌", "折りたたみ傘 自動開閉 晴雨兼用",
    "加湿器 超音波式 卓上 アロマ対応", "LED デスクライト 調光 目に優しい", "ヨガマット 10mm 厚手 収納ケース付き",
    "電気ケトル 1.0L 空焚き防止", "収納ボックス 折りたたみ 3個セット", "ボールペン 0.7mm 黒 10本",
    "コーヒーミル 手挽き セラミック刃", "保冷バッグ 大容量 ピクニック", "ワイヤレスマウス 静音 USBレシーバー",
    "モバイルバッテリー 10000mAh 軽量 PSE認証", "スマホスタンド 卓上 角度調整", "HDMIケーブル 2m 4K対応",
    "ノートパソコンスタンド アルミ 折りたたみ", "USB-C 充電器 65W 急速充電", "防水スプレー 靴 撥水",
    "ランニングシューズ メンズ 軽量 通気性", "スニーカー レディース 厚底 白", "腕時計 メンズ アナログ 防水",
    "長財布 本革 メンズ 小銭入れ付き", "トートバッグ 帆布 A4 大容量", "サングラス 偏光 UVカット",
    "掃除機 コードレス サイクロン 軽量", "電子レンジ 単機能 17L", "液晶保護フィルム ガラス 9H",
    "キーボード 有線 日本語配列", "外付けハードディスク 2TB USB3.0", "無線LAN中継器 コンセント直挿し",
    "Bluetooth イヤホン 完全ワイヤレス 防水", "ヘッドホン 有線 密閉型 折りたたみ", "デジタル体重計 体脂肪率",
    "電動歯ブラシ 音波式 充電式", "インクカートリッジ 互換 4色パック", "プリンター用紙 A4 500枚",
    "LED電球 E26 60W相当 昼白色", "延長コード 3m 6個口 雷ガード", "カーナビ 7インチ ポータブル",
    "ドライブレコーダー 前後2カメラ 32GB", "サッカースパイク ジュニア 固定式", "ジャージ 上下 セット メンズ",
    "リュック 防水 大容量 通勤", "双眼鏡 10倍 コンサート", "関数電卓 学生 試験用",
    "ミシン 初心者 コンパクト 電動", "ラベルテープ 12mm 白地 黒文字", "空気清浄機 花粉 ペット 20畳",
    "ミラーレスカメラ用 ストラップ 本革", "ノイズキャンセリング ヘッドホン ワイヤレス",
]
COMPAT_TEMPLATES = [
    "{ja}対応 {acc}", "{ja}用 {acc}", "{ja} 互換 {acc}", "{ja}専用 {acc}", "{ja}適合 {acc}", "{ja}向け {acc}",
    "対応機種：{ja} {acc}", "{fw}対応 {acc}", "{latin}用 {acc} 日本製", "{ja}({LATIN})互換 {acc}",
    "{ja}製品に対応 {acc}", "{ja} 交換用 {acc}",
]
COMPAT_MAKERS = ["サンワサプライ", "エレコム", "ノーブランド品", "", ""]


def fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in s)


def _halfwidth_table() -> dict[str, str]:
    out = {}
    for cp in range(0xFF61, 0xFFA0):
        h = chr(cp)
        out.setdefault(unicodedata.normalize("NFKC", h), h)
    return out


HALF = _halfwidth_table()


def halfwidth(s: str) -> str:
    """Full-width katakana -> half-width forms (voiced kana as kana + ﾞ)."""
    out = []
    for c in s:
        if c in HALF:
            out.append(HALF[c])
            continue
        d = unicodedata.normalize("NFD", c)
        if len(d) == 2 and d[0] in HALF and d[1] in ("\u3099", "\u309a"):
            out.append(HALF[d[0]] + ("\uff9e" if d[1] == "\u3099" else "\uff9f"))
        else:
            out.append(c)
    return "".join(out)


SMALL = dict(zip("ァィゥェォッャュョ", "アイウエオツヤユヨ"))
TO_SMALL = {"ヤ": "ャ", "ユ": "ュ", "ヨ": "ョ", "ツ": "ッ", "ア": "ァ", "イ": "ィ"}


def small_kana_variant(ja: str) -> str | None:
    """Small kana written full size, or (where none) a full-size ヤ/ユ/ヨ/ツ written small
    (キヤノン -> キャノン, the common misspelling)."""
    if any(c in SMALL for c in ja):
        return "".join(SMALL.get(c, c) for c in ja)
    for i, c in enumerate(ja[1:], 1):
        if c in TO_SMALL:
            return ja[:i] + TO_SMALL[c] + ja[i + 1:]
    return None


def long_vowel_variant(ja: str, rng: random.Random) -> str:
    if "ー" in ja:
        return ja.replace("ー", rng.choice(["", "ｰ", "-", "−"]))
    return ja + "ー"   # a long-vowel mark the mark does not have


def middle_dot_variant(ja: str) -> str:
    if "・" in ja:
        return ja.replace("・", "")
    if len(ja) <= 3:
        return "・".join(ja)
    return ja[:2] + "・" + ja[2:]


def main() -> int:
    rng = random.Random(SEED)
    brands = []
    rows: list[tuple[dict, dict]] = []
    seller = iter(range(1, 100000))

    def add(title: str, label: dict, brand_field: str = "", seller_id: str | None = None) -> None:
        x = {"seller_id": seller_id or f"s-jp-{next(seller)}", "op": "upsert", "title": title}
        if brand_field:
            x["brand"] = brand_field
        rows.append((x, {**label, "source": "generated"}))

    for bid, latin, ja_marks, products, accessories in BRANDS:
        brands.append({"brand_id": bid, "name": latin, "trademarks": [latin] + ja_marks,
                       "authorized_sellers": [f"auth-{bid}-1"], "enforcement": "takedown", "version": 1})
        ja = ja_marks[0]
        kanji = not any("\u30a1" <= c <= "\u30ff" for c in ja)

        def pos(variant: str, title: str, shown: str) -> None:
            add(title, {"brand_id": bid, "infringing": True, "variant": variant, "shown": shown})

        def p() -> str:
            return rng.choice(products)

        def e() -> str:
            return rng.choice(EXTRAS)

        pos("jp_katakana" if not kanji else "jp_kanji", f"{ja} {p()} {e()}", ja)
        pos("jp_katakana" if not kanji else "jp_kanji", f"【{ja}】{p()} {e()} {e()}", ja)
        pos("jp_glued", rng.choice([f"{ja}製 {p()}", f"{ja}の{p()} {e()}", f"{ja}純正{p()}"]), ja)
        pos("jp_fullwidth", f"{fullwidth(latin.upper())} {p()} {e()}", fullwidth(latin.upper()))
        pos("jp_latin", f"{latin} {p()} {e()}", latin)
        if not kanji:
            hw = halfwidth(ja)
            pos("jp_halfwidth", f"{hw} {halfwidth(p())}", hw)
            sk = small_kana_variant(ja)
            if sk is not None:
                pos("jp_small_kana", f"{sk} {p()} {e()}", sk)
            lv = long_vowel_variant(ja, rng)
            pos("jp_long_vowel", f"{lv} {p()} {e()}", lv)
            md = middle_dot_variant(ja)
            pos("jp_middle_dot", f"{md} {p()} {e()}", md)
        add(f"{ja} {p()} {e()}", {"brand_id": bid, "infringing": False, "variant": "jp_authorized"},
            seller_id=f"auth-{bid}-1")
        for template in rng.sample(COMPAT_TEMPLATES, 3):
            title = template.format(ja=ja, acc=rng.choice(accessories), fw=fullwidth(latin.upper()),
                                    latin=latin, LATIN=latin.upper())
            add(title, {"brand_id": None, "infringing": False, "variant": "jp_compat", "mentions": [bid]},
                brand_field=rng.choice(COMPAT_MAKERS))
    for bid, title in SUBSTRING_NEGATIVES:
        add(title, {"brand_id": None, "infringing": False, "variant": "jp_substring", "near_miss": bid})
    for title in CLEAN:
        add(title, {"brand_id": None, "infringing": False, "variant": "jp_clean"})

    rng.shuffle(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "listings.jsonl", "w") as fl, open(OUT / "labels.jsonl", "w") as fb:
        for n, (x, label) in enumerate(rows, 1):
            lid = f"jp-{n:06d}"
            fl.write(json.dumps({"listing_id": lid, "seller_id": x["seller_id"], "event_time": BASE_TIME_MS + 1000 * n,
                                 **{k: v for k, v in x.items() if k != "seller_id"}}, ensure_ascii=False) + "\n")
            fb.write(json.dumps({"listing_id": lid, **label}, ensure_ascii=False) + "\n")
    (OUT / "brands.jsonl").write_text("".join(json.dumps(b, ensure_ascii=False) + "\n" for b in brands))
    counts: dict[str, int] = {}
    for _, label in rows:
        counts[label["variant"]] = counts.get(label["variant"], 0) + 1
    print(json.dumps({"seed": SEED, "rows": len(rows), "by_variant": counts}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
