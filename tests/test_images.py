"""cifar_core.images: uploaded bytes -> (32, 32, 3) uint8 for every odd kind of file, and the refusals (not an image,
truncated, decompression bombs, over the limits)."""

import io
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import helpers
import numpy as np
import pytest
from PIL import Image

from cifar_core.images import ImageError, fit_note, read_input, to_input_array

ROOT = Path(__file__).resolve().parent.parent


def check_rgb(array):
    assert array.shape == (32, 32, 3) and array.dtype == np.uint8
    return array.astype(int)


# ---------------------------------------------------------------------------------------------------------------
# refusals


@pytest.mark.parametrize("blob", [b"", b"hello, world", b"%PDF-1.4 ...", b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                                  bytes(range(256)) * 10])
def test_non_image_bytes(blob):
    with pytest.raises(ImageError, match="not an image in a supported format"):
        to_input_array(blob)


def test_formats_outside_the_five_are_refused():
    tiff = helpers.image_bytes(helpers.solid((1, 2, 3)), "TIFF")
    with pytest.raises(ImageError, match="supported format"):
        to_input_array(tiff)


def noise_jpeg(size=256):
    rng = np.random.default_rng(0)
    return helpers.image_bytes(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "JPEG", quality=90)


def test_truncated_jpeg_is_refused_not_padded():
    whole = noise_jpeg()
    check_rgb(to_input_array(whole))  # the whole file decodes
    with pytest.raises(ImageError, match="truncated"):
        to_input_array(whole[: len(whole) * 6 // 10])


def test_truncated_png_is_refused():
    rng = np.random.default_rng(1)
    whole = helpers.image_bytes(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(ImageError):
        to_input_array(whole[: len(whole) // 2])


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


def huge_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of width x height black pixels, a few kilobytes on disk, written chunk by chunk so
    that making it never holds the image in memory."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bombs")
    paths = {}
    for w, h in ((20000, 20000), (10000, 10000), (3000, 3000)):
        paths[w] = folder / f"{w}x{h}.png"
        paths[w].write_bytes(huge_png(w, h))
    assert paths[20000].stat().st_size < 200_000  # small file, 400 megapixels
    return paths


@pytest.mark.parametrize("side", [20000, 10000])
def test_decompression_bomb_refused_quickly(bombs, side):
    blob = bombs[side].read_bytes()
    start = time.perf_counter()
    with pytest.raises(ImageError, match="megapixels"):
        to_input_array(blob)
    assert time.perf_counter() - start < 1.0  # the header is enough (a few ms); decoding would take seconds


def test_decompression_bombs_use_little_memory(bombs):
    """In a fresh process (no TensorFlow), the peak resident memory grows by a few MB for the bombs, while decoding
    a legitimate 9-megapixel image of the same kind visibly grows it (so the measurement can see a decode).
    The peak is VmHWM of /proc/self/status: getrusage's ru_maxrss survives exec and would start at pytest's size."""
    code = r"""
import sys
from cifar_core.images import ImageError, fit_note, read_input, to_input_array
from cifar_core import images
from cifar_core import models

def peak_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

for path in sys.argv[1:]:
    blob = open(path, "rb").read()
    before = peak_kb()
    try:
        to_input_array(blob)
        outcome = "decoded"
    except ImageError:
        outcome = "refused"
    print(outcome, (peak_kb() - before) // 1024)
"""
    out = subprocess.run([sys.executable, "-c", code, str(bombs[20000]), str(bombs[10000]), str(bombs[3000])],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    (o1, mb1), (o2, mb2), (o3, mb3) = [(o, int(mb)) for o, mb in rows]
    assert (o1, o2, o3) == ("refused", "refused", "decoded")
    assert mb1 < 20 and mb2 < 20, rows  # a full decode would need 100 to 400 MB
    assert mb3 >= 9, rows  # the 3000x3000 control: 9 MB of 1-bit pixels alone


# ---------------------------------------------------------------------------------------------------------------
# every odd kind of image


def test_mode_1():
    bits = np.zeros((32, 32), bool)
    bits[:, 16:] = True
    out = check_rgb(to_input_array(helpers.image_bytes(Image.fromarray(bits))))
    assert (out[:, :16] == 0).all() and (out[:, 16:] == 255).all()


def test_mode_l():
    grey = np.full((32, 32), 77, np.uint8)
    out = check_rgb(to_input_array(helpers.image_bytes(Image.fromarray(grey, "L"))))
    assert (out == 77).all()


def test_mode_p_with_transparency_on_white():
    image = Image.new("P", (32, 32), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red (transparent), index 1 blue
    image.paste(1, (16, 0, 32, 32))
    blob = helpers.image_bytes(image, "PNG", transparency=0)
    assert Image.open(io.BytesIO(blob)).mode == "P"
    out = check_rgb(to_input_array(blob))
    assert (out[:, :16] == 255).all()  # transparent red shows as white, not red
    assert (out[:, 16:] == [0, 0, 255]).all()


def test_mode_la():
    la = np.zeros((32, 32, 2), np.uint8)
    la[:, 16:, 1] = 255  # left: black but fully transparent; right: opaque black
    out = check_rgb(to_input_array(helpers.image_bytes(Image.fromarray(la, "LA"))))
    assert (out[:, :16] == 255).all() and (out[:, 16:] == 0).all()


def test_mode_rgba_composited_on_white():
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[...] = (255, 0, 0, 128)  # half-transparent red over white: (255, 127, 127)
    out = check_rgb(to_input_array(helpers.image_bytes(Image.fromarray(rgba, "RGBA"))))
    assert np.abs(out - [255, 127, 127]).max() <= 1


def test_mode_i16_scaled_not_clipped():
    values = np.full((32, 32), 1000, np.uint16)
    values[:, 16:] = 40000
    blob = helpers.image_bytes(Image.fromarray(values))
    assert Image.open(io.BytesIO(blob)).mode == "I;16"
    out = check_rgb(to_input_array(blob))
    assert (out[:, :16] == round(1000 * 255 / 65535)).all()  # 4, where clipping would give 255
    assert (out[:, 16:] == round(40000 * 255 / 65535)).all()  # 156


def test_mode_cmyk_jpeg():
    blob = helpers.image_bytes(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(blob)).mode == "CMYK"
    out = check_rgb(to_input_array(blob))
    assert np.abs(out - [255, 0, 0]).max() <= 8  # red


FRAMES = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


@pytest.mark.parametrize("format, args", [("GIF", {}), ("WEBP", {"lossless": True})])
def test_animations_use_the_first_frame(format, args):
    frames = [Image.fromarray(helpers.solid(c, (40, 40))) for c in FRAMES]
    blob = helpers.image_bytes(frames[0], format, save_all=True, append_images=frames[1:], duration=100, **args)
    assert getattr(Image.open(io.BytesIO(blob)), "n_frames", 1) == 3
    out = check_rgb(to_input_array(blob))
    assert np.abs(out - FRAMES[0]).max() <= 2


def test_bmp_and_large_non_square_jpeg():
    check_rgb(to_input_array(helpers.image_bytes(helpers.solid((9, 9, 9), (50, 20)), "BMP")))
    # a 4000x3000 photo-sized JPEG is decoded at reduced scale and centre-cropped
    image = np.zeros((3000, 4000, 3), np.uint8)
    image[:, 2000:] = 255
    out = check_rgb(to_input_array(helpers.image_bytes(image, "JPEG", quality=90)))
    assert out[:, :12].max() <= 10 and out[:, 20:].min() >= 245


def quadrants(side: int) -> np.ndarray:
    """Upright test card: top-left red, top-right green, bottom-left blue, bottom-right white."""
    h = side // 2
    image = np.zeros((side, side, 3), np.uint8)
    image[:h, :h] = (255, 0, 0)
    image[:h, h:] = (0, 255, 0)
    image[h:, :h] = (0, 0, 255)
    image[h:, h:] = (255, 255, 255)
    return image


def test_exif_orientation_6_is_made_upright():
    upright = quadrants(64)
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # orientation 6: "rotate 90 degrees clockwise to view"
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    blob = helpers.image_bytes(image, "JPEG", quality=95, exif=exif.tobytes())
    out = check_rgb(to_input_array(blob))
    expected = quadrants(32).astype(int)
    assert np.abs(out - expected).mean() < 8
    for (r, c) in ((8, 8), (8, 24), (24, 8), (24, 24)):
        assert np.abs(out[r, c] - expected[r, c]).max() < 30
    # without the EXIF tag the same pixels are not upright (so this test can tell the difference)
    plain = check_rgb(to_input_array(helpers.image_bytes(image, "JPEG", quality=95)))
    assert np.abs(plain - expected).mean() > 50


def test_a_large_image_is_reduced_before_it_is_converted_and_gives_what_a_full_size_fit_gives():
    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)
    big = np.kron(coarse, np.ones((32, 32, 1), np.uint8))  # 1280x1280 RGBA, reduced 10x before _to_rgb
    blob = helpers.image_bytes(Image.fromarray(big, "RGBA"), "PNG")
    reference = Image.alpha_composite(Image.new("RGBA", (1280, 1280), (255, 255, 255, 255)),
                                      Image.fromarray(big, "RGBA")).convert("RGB")
    expected = np.asarray(reference.resize((32, 32), Image.Resampling.LANCZOS)).astype(int)
    assert np.abs(check_rgb(to_input_array(blob)) - expected).mean() < 1.5
    palette = Image.fromarray(big[..., :3]).quantize(16)  # a palette image is converted whole, not averaged
    expected = np.asarray(palette.convert("RGB").resize((32, 32), Image.Resampling.LANCZOS)).astype(int)
    assert np.abs(check_rgb(to_input_array(helpers.image_bytes(palette, "PNG"))) - expected).mean() < 1.5


# ---------------------------------------------------------------------------------------------------------------
# fit_note: what the reader of a prediction should know about how the image was fitted


@pytest.mark.parametrize("size, words", [
    ((1, 1), "This image is 1 × 1 pixels, fewer than the 32 × 32 the model takes"),
    ((40, 20), "This image is 40 × 20 pixels, fewer than the 32 × 32"),
    ((300, 100), "This image is 300 × 100 pixels: only its centre square was classified"),
    ((20, 2000), "This image is 20 × 2000 pixels, fewer than the 32 × 32 the model takes: only its centre square was "
                 "classified, more than half of it cropped away, and enlarged"),  # both, not only the first
    ((64, 64), None), ((64, 32), None),  # square or 2:1: nothing to say
])
def test_fit_note(size, words):
    note = fit_note(helpers.image_bytes(np.zeros((size[1], size[0], 3), np.uint8)))
    assert note == words if words is None else note.startswith(words) and note.endswith(".")


def test_fit_note_counts_the_image_as_shown_and_says_nothing_of_non_images():
    image = Image.fromarray(np.zeros((100, 300, 3), np.uint8))  # stored 300 wide; orientation 6 shows it 100 wide
    exif = image.getexif()
    exif[0x0112] = 6
    assert fit_note(helpers.image_bytes(image, "JPEG", exif=exif.tobytes())).startswith("This image is 100 × 300")
    assert fit_note(b"not an image") is None


def test_the_preview_of_an_upload_keeps_the_whole_image_within_its_box():
    from cifar_core.images import preview_png

    def size(data):
        return Image.open(io.BytesIO(data)).size

    thin = np.zeros((2000, 20, 3), np.uint8)  # shown at the column's width it had been 19,000 pixels tall
    assert size(preview_png(helpers.image_bytes(thin))) == (64, 256)  # framed: stretched to a caption's width, 3
    # pixels wide had still been 4,155 tall
    assert size(preview_png(helpers.image_bytes(np.zeros((480, 640, 3), np.uint8)))) == (256, 192)
    sample = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    shown = np.asarray(Image.open(io.BytesIO(preview_png(helpers.image_bytes(sample)))))
    assert shown.shape == (256, 256, 3) and (shown[::8, ::8] == sample).all()  # whole pixels, not smoothed
    assert (shown[7::8, 7::8] == sample).all()
    with pytest.raises(ImageError):
        preview_png(b"not an image")


def test_a_see_through_image_is_said_to_be_classified_on_white():
    # a logo with a transparent background had been classified on white without a word
    clear = np.zeros((40, 40, 4), np.uint8)
    clear[10:30, 10:30] = (200, 30, 30, 255)  # an opaque red square on a transparent ground
    array, note = read_input(helpers.image_bytes(clear))
    assert note.startswith("Its transparent parts were classified as white")
    assert tuple(array[0, 0]) == (255, 255, 255)
    opaque = clear.copy()
    opaque[..., 3] = 255
    assert read_input(helpers.image_bytes(opaque))[1] is None  # an alpha channel that hides nothing
    palette = Image.fromarray(clear[..., :3]).convert("P")
    palette.info["transparency"] = 0
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=0)
    assert "transparent parts" in read_input(buffer.getvalue())[1]
    wide = np.zeros((20, 100, 4), np.uint8)  # both notes, the crop's first
    assert read_input(helpers.image_bytes(wide))[1].startswith("This image is 100 × 20 pixels")


def test_an_animation_is_said_to_be_classified_on_its_first_frame():
    # an animated GIF had been classified on its first frame without a word about the others
    frames = [Image.new("RGB", (40, 40), colour) for colour in ("red", "blue", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    array, note = read_input(buffer.getvalue())
    assert note == "It is an animation: only its first frame was classified."
    assert tuple(array[16, 16]) == (255, 0, 0)  # the first frame's red
    still = io.BytesIO()
    frames[0].save(still, "GIF")
    assert read_input(still.getvalue())[1] is None
