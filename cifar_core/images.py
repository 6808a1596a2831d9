"""Image files -> the 32x32 RGB uint8 arrays a model sees: uploads (Classify, Layers, `predict`) and image folders
(readers.py) alike.

Pillow is told to be strict: formats are detected from content (not the file name) and limited to the five the app
accepts, files over MAX_BYTES are refused before they are read, images over MAX_PIXELS are refused from their header
before any pixel is decoded, decompression-bomb warnings are errors, and truncated files are refused rather than
padded.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps

from .files import open_regular

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
UPLOAD_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif", "bmp")
MAX_PIXELS = 50_000_000  # a 48-megapixel phone photo passes; a 10000x10000 bomb does not
MAX_BYTES = 10 * 1024 * 1024
# What one decoded image may take in Pillow: 4 bytes a pixel (RGB and RGBA alike) and a pointer a row, so that a
# 1 x 49,000,000 PNG of 95 kB (0.6 GB) is refused from its header, and a 48-megapixel PNG (0.2 GB) is not.
MAX_DECODED_BYTES = 256 * 2**20
# Pillow's WebP decoder holds about four RGBA copies of the image at once (a 4000x4000 WebP took 248 MB, its RGBA
# pixels 61): counted here, WebP stops at 16 megapixels, where a 7000x7000 one of 2 kB had taken 751 MB.
DECODER_COPIES = {"WEBP": 4}
# A progressive JPEG's decoder passes over the image once per scan: a photo has about 10, and a 0.55 MB file of
# 10,000 one-coefficient scans took 13 s (a 10 MB one would take minutes). The count of SOS markers (FF DA, which
# entropy-coded data cannot hold) bounds it before decoding.
MAX_JPEG_SCANS = 100
JPEG_FORMATS = ("JPEG", "MPO")  # Pillow names a JPEG with a multi-picture (APP2) segment MPO; it decodes the same
# Pillow decodes run-length BMPs (RLE8, RLE4) in Python, a step a byte: a 28 kB 7000x7000 one of one-pixel rows
# took 10 s, a 2000x2000 one 0.9 s. Such BMPs are read up to a megapixel (about 0.25 s).
MAX_RLE_BMP_PIXELS = 1_000_000
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")

ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageError(ValueError):
    """A file that is not a usable image; the message is one sentence for the user."""


def _has_alpha(image: Image.Image) -> bool:
    """Whether the image's mode carries transparency: an alpha band, or a palette with a transparent colour."""
    return image.mode in ("LA", "La", "PA", "RGBA", "RGBa") or image.mode == "P" and "transparency" in image.info


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in (*SIXTEEN_BIT, "I"):
        # 16-bit greyscale: scale the full 0..65535 range to 0..255 rather than clipping at 255.
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.round(values * 255.0 / 65535.0), 0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        image = image.convert("L")
    if _has_alpha(image):
        # Transparent pixels have no colour of their own: show them on white, as an image viewer does.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def _reduced(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A large image box-averaged to about 4x the target size before the conversions of _to_rgb, each of which copies
    it whole: a 7000x7000 RGBA PNG then costs a quarter of the memory and half the time (benchmarks/README.md), for
    the same 32x32 result to within a level. Pillow cannot reduce 16-bit greyscale, which _to_rgb would otherwise
    scale through float64 at full size (1.2 GB for 7000x7000): NumPy averages its blocks instead, in float32, without
    a full-size copy. Palette, 1-bit and other modes whose values cannot be averaged are converted band by band and
    each band reduced (_reduced_in_bands)."""
    factor = min(image.size[0] // (4 * size[0]), image.size[1] // (4 * size[1]))
    if factor < 2:
        return image
    if image.mode in SIXTEEN_BIT:
        values = np.asarray(image)
        height, width = (side // factor * factor for side in values.shape)
        blocks = values[:height, :width].reshape(height // factor, factor, width // factor, factor)
        return Image.fromarray(np.round(blocks.mean(axis=(1, 3), dtype=np.float32)).astype(np.uint16))
    if image.mode in ("L", "LA", "RGB", "RGBA", "CMYK", "I", "F"):
        return image.reduce(factor)
    return _reduced_in_bands(image, factor)


def _reduced_in_bands(image: Image.Image, factor: int) -> Image.Image:
    """A palette (or 1-bit, or premultiplied) image converted to RGB or RGBA a band of rows at a time, each band
    reduced as it is made: converted whole, a 6 kB 7000x7000 palette PNG with a transparent colour took 609 MB (the
    RGBA copy, the white background and their composite), three times a plain RGB PNG of that size. Transparency is
    averaged premultiplied (RGBa), so a transparent pixel's hidden colour does not bleed into its neighbours."""
    alpha = "transparency" in image.info or image.mode in ("PA", "La", "RGBa")
    width, height = image.size[0] // factor * factor, image.size[1] // factor * factor
    reduced = Image.new("RGBa" if alpha else "RGB", (width // factor, height // factor))
    rows = max(1, 2**23 // (4 * width * factor)) * factor  # bands of about 8 MB once converted
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(top + rows, height))).convert("RGBA" if alpha else "RGB")
        reduced.paste((band.convert("RGBa") if alpha else band).reduce(factor), (0, top // factor))
    return reduced.convert("RGBA") if alpha else reduced


def to_input_array(data: bytes, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """Image file bytes -> (height, width, 3) uint8, upright (EXIF orientation applied), centre-cropped to a
    square and resized. Raises ImageError with a sentence for anything that is not a safe, whole image."""
    return read_input(data, size)[0]


def fit_note(data: bytes, size: tuple[int, int] = (32, 32)) -> str | None:
    """read_input's note alone; None for bytes that are not an image (to_input_array says why in its sentence)."""
    try:
        return read_input(data, size)[1]
    except ImageError:
        return None


def _note_for(width: int, height: int, size: tuple[int, int]) -> str | None:
    cropped = max(width, height) > 2 * min(width, height)
    if min(width, height) < min(size):
        return (f"This image is {width} × {height} pixels, fewer than the {size[0]} × {size[1]} the model takes: "
                + ("only its centre square was classified, more than half of it cropped away, and " if cropped else
                   "it was ")
                + "enlarged, so the prediction rests on very little detail.")
    if cropped:
        return (f"This image is {width} × {height} pixels: only its centre square was classified, and more than "
                "half of it was cropped away.")
    return None


@contextlib.contextmanager
def _opened(data: bytes, size: tuple[int, int]):
    """The image of data, checked before a pixel is decoded (bytes, pixels, decoded memory, JPEG scans), decoded at a
    reduced scale where the format allows it and turned upright; yields (image, width, height as shown). Raises
    ImageError with one sentence for anything that is not a safe, whole image."""
    if len(data) > MAX_BYTES:
        raise ImageError(f"The file is {len(data) / 2**20:.1f} MB; the limit is {MAX_BYTES // 2**20} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageError(f"The image is {width}x{height} pixels; the limit is "
                                     f"{MAX_PIXELS // 1_000_000} megapixels.")
                scans = data.count(b"\xff\xda") if image.format in JPEG_FORMATS else 0
                if scans > MAX_JPEG_SCANS:
                    raise ImageError(f"The JPEG has {scans:,} scans where a photo has about 10 (at most "
                                     f"{MAX_JPEG_SCANS} are read): decoding it would take minutes.")
                if image.format == "BMP" and image.info.get("compression") in (1, 2) \
                        and width * height > MAX_RLE_BMP_PIXELS:
                    raise ImageError(f"The BMP is {width}x{height} pixels and run-length compressed, which is decoded "
                                     f"slowly; such BMPs are read up to {MAX_RLE_BMP_PIXELS // 1_000_000} megapixel. "
                                     "Save it as PNG or JPEG.")
                if image.format in JPEG_FORMATS:
                    image.draft("RGB", (size[0] * 4, size[1] * 4))  # decode large JPEGs at a reduced scale
                copies = DECODER_COPIES.get(image.format, 1)
                if image.size[1] * (8 + 4 * image.size[0]) * copies > MAX_DECODED_BYTES:
                    shape = "too long and thin" if copies == 1 else f"too large as {image.format}"
                    raise ImageError(f"The image is {width}x{height} pixels, {shape} to open safely: "
                                     f"decoding it would take more than {MAX_DECODED_BYTES // 2**20} MB.")
                if image.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8):  # turned a quarter: as shown
                    width, height = height, width
                image.load()
                ImageOps.exif_transpose(image, in_place=True)
                yield image, width, height
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"The image is too large to open safely; the limit is {MAX_PIXELS // 1_000_000} "
                         "megapixels.") from None
    except Image.UnidentifiedImageError:
        raise ImageError("This file is not an image in a supported format (PNG, JPEG, WebP, GIF or BMP).") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        reason = "it is truncated" if "truncated" in str(e) else str(e) or type(e).__name__
        raise ImageError(f"The image is corrupt and cannot be decoded ({reason}).") from None


def read_input(data: bytes, size: tuple[int, int] = (32, 32)) -> tuple[np.ndarray, str | None]:
    """(to_input_array's array, a sentence for the reader of its prediction on what fitting the image took:
    enlarged from fewer pixels than the model takes, or most of it cropped away; None when it suits the model),
    from one decoding of the file. Raises ImageError as to_input_array does."""
    with _opened(data, size) as (image, width, height):
        # an animation's first frame is what Pillow decodes: said, as the other frames might show something else
        animated = getattr(image, "is_animated", False)
        image = _reduced(image, size)
        see_through = _see_through(image)
        image = _to_rgb(image)
        if image.size != size:
            image = ImageOps.fit(image, size, method=Image.Resampling.LANCZOS)
        notes = [_note_for(width, height, size), see_through and "Its transparent parts were classified as white, as "
                 "an image viewer shows them: the model was trained on photographs, which have none.",
                 animated and "It is an animation: only its first frame was classified."]
        return np.asarray(image, dtype=np.uint8).copy(), " ".join(n for n in notes if n) or None


def _see_through(image: Image.Image) -> bool:
    """Whether any pixel is at least partly transparent: said beside the prediction, since _to_rgb puts it on white
    (a logo with a transparent background had been classified without a word about its white)."""
    return _has_alpha(image) and image.convert("RGBA").getchannel("A").getextrema()[0] < 255


def preview_png(data: bytes, side: int = 256) -> bytes:
    """The whole image, upright, within side x side pixels, as PNG: what a page shows as the original. A 20 x 2000
    upload shown at the column's width had made the page 19,000 pixels tall; one that thin is framed in white to a
    quarter of the side. A small image is enlarged by whole pixels, so that a 32 x 32 sample looks as blocky as what
    the model sees beside it, not smoothed."""
    with _opened(data, (side // 4, side // 4)) as (image, _, _):
        image = _to_rgb(_reduced(image, (side // 4, side // 4)))
        if max(image.size) > side:
            image = ImageOps.contain(image, (side, side), method=Image.Resampling.LANCZOS)
        elif max(image.size) * 2 <= side:
            times = side // max(image.size)
            image = image.resize((image.size[0] * times, image.size[1] * times), Image.Resampling.NEAREST)
        if min(image.size) < side // 4:  # a page stretches a 3-pixel-wide preview to its caption's width
            framed = Image.new("RGB", (max(image.size[0], side // 4), max(image.size[1], side // 4)), "white")
            framed.paste(image, ((framed.size[0] - image.size[0]) // 2, (framed.size[1] - image.size[1]) // 2))
            image = framed
        return encode_png(np.asarray(image))


def read_image_file(path: str | os.PathLike) -> bytes:
    """A file's bytes for to_input_array, its size checked before it is read: a 2 GB file is refused, not loaded.
    Raises ImageError with one sentence, for a missing or unreadable file too."""
    try:
        # a named pipe or a device is refused, not waited on or read forever; a user's link is theirs to give
        with open_regular(path, follow_links=True) as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_BYTES:
                raise ImageError(f"The file is {size / 2**20:.1f} MB; the limit is {MAX_BYTES // 2**20} MB.")
            return f.read(MAX_BYTES + 1)
    except ImageError:
        raise
    except IsADirectoryError:
        raise ImageError("This is a folder, not an image file.") from None
    except FileNotFoundError:
        raise ImageError("There is no such file.") from None
    except OSError as e:
        raise ImageError(f"The file cannot be read ({e.strerror or type(e).__name__}).") from None


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
