"""The scan operator's configuration: one frozen object, made from `Settings` by the job
(`scanner_job`) and pickled to every Python worker. No PyFlink import: the portal's listing
check reads the same image configuration."""
from __future__ import annotations

from dataclasses import dataclass, field

from brand_signals.sources import DEFAULT as DEFAULT_SIGNALS
from connectors.egress import EgressPolicy
from connectors.image_fetch import FetchBudgets
from zeroscan.settings import DEFAULT_GC_YOUNG


@dataclass(frozen=True, slots=True)
class ImageScan:
    """Image scanning (absent: text only). Seller-supplied uris are fetched under `egress` and
    `fetch`; results are cached by image sha256 under `cache_dir`. `listing_base_dir`: in file
    mode, the listings file's folder (relative listing image paths, the only local files a
    listing may name); `brands_base_dir`: where relative brand image paths are read."""

    ocr: bool = True
    ocr_upscale: bool = False
    device: str = "cpu"           # where the image models run: cpu or cuda (models/device.py)
    cache_dir: str | None = None
    egress: EgressPolicy = field(default_factory=lambda: EgressPolicy.from_lists([], []))
    fetch: FetchBudgets = field(default_factory=FetchBudgets)
    listing_base_dir: str | None = None
    brands_base_dir: str | None = None


@dataclass(frozen=True, slots=True)
class BrandInput:
    """Where the operator's catalogue comes from: a brands file, or the compacted brands topic."""

    path: str | None = None
    kafka: object | None = None      # connectors.kafka_config.KafkaClientConfig (holds secrets)
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class ScanConfig:
    """`ledger_kafka`/`ledger_topic`: the feedback ledger (absent in file mode); `kafka` holds
    secrets: never log the configuration. `files`: (listing, feedback) paths named in file mode's origins."""

    model_version: str
    brands: BrandInput
    signals: tuple[str, ...] = DEFAULT_SIGNALS
    ledger_kafka: object | None = None
    ledger_topic: str | None = None
    files: tuple[tuple[str, str], ...] = ()
    images: ImageScan | None = None
    # How records cross into Python: `pandas` (Arrow batches, the default) or `row` (one record
    # per call: only to measure the crossing, see operators.ScanRowFunction).
    udf: str = "pandas"
    # The young-collection threshold of the workers' cyclic collector (ZEROSCAN_GC_YOUNG).
    gc_young: int = DEFAULT_GC_YOUNG

    def __repr__(self) -> str:
        return (f"ScanConfig(model_version={self.model_version!r}, signals={self.signals!r}, "
                f"images={'on' if self.images else 'off'})")


def image_scan(settings) -> ImageScan | None:
    """Image scanning as `settings` (zeroscan.settings.Settings) ask: None when
    ZEROSCAN_IMAGES=off; OCR unless ZEROSCAN_IMAGE_OCR=off (`upscale`: small photos are read a
    second time scaled up). The egress lists are checked here, so a bad list fails at start."""
    if not settings.images:
        return None
    return ImageScan(ocr=settings.image_ocr != "off", ocr_upscale=settings.image_ocr == "upscale",
                     device=settings.image_device,
                     cache_dir=str(settings.state_dir / "image-cache"),
                     egress=EgressPolicy.from_lists(list(settings.egress_allow), list(settings.egress_deny)),
                     fetch=FetchBudgets.from_config(settings.fetch_budgets))
