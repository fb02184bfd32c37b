"""Images in and out of zeroscan: a content-addressed (sha256) store for brand logos and product
photos, and `fetch` for image uris (relative paths, absolute paths, file://, http(s)).

Every image is checked before it is kept, under the same limits as listing photos
(brand_signals.image_decode.ImageLimits: one header prober, one decoder): the format from its
magic bytes (PNG, JPEG, WebP), a byte cap, a pixel cap read from the header before any decoder
runs (decompression bombs), a full decode with reduction (corrupt or truncated files; a huge
image costs its analysis size, not its header's) and, when given, its sha256.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3

from brand_signals import image_decode
from brand_signals.image_decode import MAX_IMAGE_BYTES, MAX_PIXELS, ImageDecodeError, ImageFormat, ImageInfo, ImageLimits
from brand_signals.records import ImageRef
from connectors.atomic_file import write_atomically

__all__ = ["MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "ImageFormat", "ImageInfo", "ImageLimits", "ImageRejected",
           "ImageStore", "StoredImage", "FetchTimeouts", "check_image", "fetch", "probe", "sha256_hex"]

# The header pixel cap, shared with listing photos (image_decode.MAX_PIXELS says why).
MAX_IMAGE_PIXELS = MAX_PIXELS
# requests' advice: a connect timeout slightly above a multiple of 3 s (TCP's retransmit window).
CONNECT_TIMEOUT_S = 3.05
# Longest silence between two reads of a response; a healthy image host streams continuously.
READ_TIMEOUT_S = 10.0
# Whole-download deadline: a server that drips a byte per read-timeout is cut off here.
TOTAL_TIMEOUT_S = 30.0
MAX_REDIRECTS = 3
_CHUNK = 64 << 10

SHA256_RE = re.compile(r"[0-9a-f]{64}")


class ImageRejected(ValueError):
    """An image that is not kept or not fetched; the message says why."""


ALLOWED_CONTENT_TYPES = frozenset(f.content_type for f in ImageFormat) | {"image/jpg"}


@dataclass(frozen=True, slots=True)
class FetchTimeouts:
    connect_s: float = CONNECT_TIMEOUT_S
    read_s: float = READ_TIMEOUT_S
    total_s: float = TOTAL_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class StoredImage:
    sha256: str
    path: Path
    info: ImageInfo

    @property
    def uri(self) -> str:
        return self.path.as_uri()

    def ref(self) -> ImageRef:
        return ImageRef(self.uri, self.sha256)


# -- format and header probing: brand_signals.image_decode, its errors as ImageRejected -------

def sniff_format(data: bytes) -> ImageFormat:
    """The format from the magic bytes (never the file name)."""
    try:
        return image_decode.sniff_format(data)
    except ImageDecodeError as e:
        raise ImageRejected(str(e)) from None


def probe(data: bytes) -> ImageInfo:
    """Format and dimensions from the header alone."""
    try:
        return image_decode.probe(data)
    except ImageDecodeError as e:
        raise ImageRejected(str(e)) from None


def _decode(data: bytes, info: ImageInfo, limits: ImageLimits) -> None:
    """Decode the whole image once (with reduction); anything the decoder refuses is refused."""
    try:
        image_decode.decode(data, limits)
    except ImageDecodeError as e:
        raise ImageRejected(str(e)) from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_sha256(data: bytes, expected: str | None) -> str:
    got = sha256_hex(data)
    if expected is not None:
        if not SHA256_RE.fullmatch(expected):
            raise ImageRejected("expected sha256 is not 64 lower-case hex digits")
        if got != expected:
            raise ImageRejected(f"sha256 mismatch: the content's sha256 is {got}, not the one expected")
    return got


def check_image(data: bytes, limits: ImageLimits = ImageLimits(), expected_sha256: str | None = None) -> ImageInfo:
    """All the checks, cheapest first; raises ImageRejected, returns format and size."""
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"image is {len(data)} bytes, above the {limits.max_bytes}-byte limit")
    check_sha256(data, expected_sha256)
    try:
        info = image_decode.check_header(data, limits)
    except ImageDecodeError as e:
        raise ImageRejected(str(e)) from None
    _decode(data, info, limits)
    return info


# -- the store -------------------------------------------------------------------------------

class ImageStore:
    """Checked images kept once each under `root/<sha[:2]>/<sha>`; files are written atomically."""

    def __init__(self, root: Path, limits: ImageLimits = ImageLimits()) -> None:
        self.root = Path(root).resolve()
        self.limits = limits

    @classmethod
    def at_state_dir(cls, state_dir: Path, limits: ImageLimits = ImageLimits()) -> "ImageStore":
        return cls(Path(state_dir) / "images", limits)

    def path_of(self, sha256: str) -> Path:
        if not SHA256_RE.fullmatch(sha256):
            raise ImageRejected(f"sha256 {sha256[:80]!r} is not 64 lower-case hex digits")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def get(self, sha256: str) -> StoredImage:
        path = self.path_of(sha256)
        if not path.is_file():
            raise ImageRejected(f"image {sha256} is not in the store")
        return StoredImage(sha256, path, probe(path.read_bytes()))

    def put(self, data: bytes, expected_sha256: str | None = None) -> StoredImage:
        info = check_image(data, self.limits, expected_sha256)
        sha = sha256_hex(data)
        path = self.path_of(sha)
        if not path.is_file():
            write_atomically(path, data, 0o444)
        return StoredImage(sha, path, info)

    def ingest(self, ref: ImageRef, base_dir: Path | None) -> ImageRef:
        """Fetch an image reference (trusted operator input), keep it, and return the store's ref."""
        if ref.sha256 is not None and self.has(ref.sha256):
            return self.get(ref.sha256).ref()
        data = fetch(ref.uri, base_dir, ref.sha256, limits=self.limits)
        return self.put(data, ref.sha256).ref()


# -- fetching --------------------------------------------------------------------------------

def fetch(uri: str, base_dir: Path | str | None, expected_sha256: str | None = None, *,
          limits: ImageLimits = ImageLimits(), timeouts: FetchTimeouts = FetchTimeouts(),
          session: requests.Session | None = None) -> bytes:
    """The bytes of an image uri, capped and type-checked (magic bytes; content type for http).

    `uri`: a path relative to `base_dir`, an absolute path, `file://` or `http(s)://`. The full
    decode is left to `check_image` / `ImageStore.put`."""
    parsed = urllib.parse.urlsplit(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        data = _fetch_http(uri, limits, timeouts, session)
    elif scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ImageRejected(f"{uri}: file:// uris on another host are not supported")
        data = _read_file(Path(urllib.request.url2pathname(parsed.path)), uri, limits)
    elif scheme == "":
        path = Path(uri)
        if not path.is_absolute():
            if base_dir is None:
                raise ImageRejected(f"{uri}: a relative path needs a base folder")
            path = Path(base_dir) / path
        data = _read_file(path, uri, limits)
    else:
        raise ImageRejected(f"{uri[:200]}: unsupported scheme {scheme!r} (use a path, file:// or http(s)://)")
    check_sha256(data, expected_sha256)
    sniff_format(data)
    return data


def _read_file(path: Path, uri: str, limits: ImageLimits) -> bytes:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limits.max_bytes:
                raise ImageRejected(f"{uri}: {size} bytes, above the {limits.max_bytes}-byte limit")
            data = f.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise ImageRejected(f"{uri}: no such file {path}") from None
    except IsADirectoryError:
        raise ImageRejected(f"{uri}: {path} is a folder") from None
    except PermissionError:
        raise ImageRejected(f"{uri}: no permission to read {path}") from None
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"{uri}: above the {limits.max_bytes}-byte limit")
    return data


def _fetch_http(uri: str, limits: ImageLimits, timeouts: FetchTimeouts, session: requests.Session | None) -> bytes:
    own = session is None
    s = requests.Session() if own else session
    s.max_redirects = MAX_REDIRECTS
    deadline = time.monotonic() + timeouts.total_s
    try:
        with s.get(uri, stream=True, timeout=(timeouts.connect_s, timeouts.read_s),
                   headers={"Accept": ", ".join(sorted(ALLOWED_CONTENT_TYPES)), "Accept-Encoding": "identity"}) as r:
            if r.status_code != 200:
                raise ImageRejected(f"{uri}: HTTP {r.status_code}")
            ctype = r.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if ctype not in ALLOWED_CONTENT_TYPES:
                raise ImageRejected(f"{uri}: content type {ctype or 'missing'!r}, expected one of "
                                    f"{', '.join(sorted(ALLOWED_CONTENT_TYPES))}")
            declared = r.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
                raise ImageRejected(f"{uri}: Content-Length {declared}, above the {limits.max_bytes}-byte limit")
            buf = bytearray()
            while chunk := r.raw.read1(_CHUNK, decode_content=True):  # returns what has arrived
                buf += chunk
                if len(buf) > limits.max_bytes:
                    raise ImageRejected(f"{uri}: more than {limits.max_bytes} bytes, above the limit")
                if time.monotonic() > deadline:
                    raise ImageRejected(f"{uri}: download took longer than {timeouts.total_s}s")
            return bytes(buf)
    except (requests.Timeout, urllib3.exceptions.TimeoutError) as e:
        raise ImageRejected(f"{uri}: timed out ({type(e).__name__})") from None
    except requests.TooManyRedirects:
        raise ImageRejected(f"{uri}: more than {MAX_REDIRECTS} redirects") from None
    except requests.RequestException as e:  # a read timeout mid-stream arrives as ConnectionError
        what = "timed out" if "timed out" in str(e).lower() else f"{type(e).__name__}: {e}"
        raise ImageRejected(f"{uri}: {what}") from None
    except (urllib3.exceptions.HTTPError, OSError) as e:  # raised by the raw stream mid-body
        raise ImageRejected(f"{uri}: {type(e).__name__}: {e}") from None
    finally:
        if own:
            s.close()
