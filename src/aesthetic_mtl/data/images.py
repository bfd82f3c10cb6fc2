"""Decode, orient, convert and resize one photo.

Every photo goes through `load_image` exactly once per (dataset, size): `image_cache.build_image_cache`
stores the result as one (N, S, S, 3) uint8 `.npy` memmap, so the feature cache and Grad-CAM read
identical pixels and no later step depends on Pillow's decoder again.

Choices (the paper states none of them):

- transparent pixels are composited onto **white**, as a browser or photo viewer shows a PNG on a page;
  black would darken logos and cut-outs, and dropping alpha would expose whatever colour the encoder
  left under it;
- 16-bit grey images are scaled to 8 bit by ``round(value / 257)`` (65535 -> 255), because Pillow's own
  ``convert("L")`` clips everything above 255 to white;
- 32-bit float images (mode ``F``, e.g. float TIFFs) are read as the float-image convention has it,
  0.0 = black and 1.0 = white, scaled by ``round(value * 255)``; a float image with values outside
  [0, 1] (or NaN / inf) is refused naming the range found, because nothing in the file says what its
  black and white are (Pillow's own conversion would clip it to all black or all white);
- the resize filter is `images.interpolation`: `bicubic_fast` (the default) decodes JPEGs with libjpeg's
  reduced-DCT scaling (`Image.draft`) to no less than twice the target size, then resizes with Pillow's
  antialiased bicubic filter and a 3x reducing gap: several times faster than a full decode and visually
  identical. The other values are Pillow's filters as `keras.utils.load_img(path, target_size=...,
  interpolation=...)` applies them: full decode, one `Image.resize` (Keras' default is `nearest`, which
  samples without antialiasing). For an upright RGB or grey photo without transparency and `squash`, the
  pixels equal Keras' bit for bit (tests/test_keras_reference.py); Keras neither applies the EXIF
  orientation nor composites transparency, we do both;
- photos whose conversion to 8-bit RGB needs more than the decoded pixels (transparency, CMYK, 16-bit,
  float) are first box-reduced by an integer factor to no less than twice the target size, band by band
  (`_reduce_early`), and converted after, whatever the interpolation: compositing or converting a
  24-megapixel RGBA photo at full size took ~1 GB of 32-bit arrays, now the photo's own 96 MB. The box
  filter averages premultiplied colour, so the result equals compositing first up to rounding;
- broken images raise `DataError` naming the file and the reason; `ImageFile.LOAD_TRUNCATED_IMAGES`
  stays off, so a truncated photo is never silently padded with grey.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from aesthetic_mtl.errors import DataError
from aesthetic_mtl.specs import ImageSpec

PILLOW_MAX_PIXELS = 178956970
"""Pillow's default decompression-bomb limit (also the config default `images.max_pixels`)."""

RESIZE_MODES = ("squash", "center_crop")
FAST = "bicubic_fast"
KERAS_FILTERS = {  # keras.utils.load_img's interpolation names (keras/src/utils/image_utils.py)
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "hamming": Image.Resampling.HAMMING,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}
INTERPOLATIONS = (FAST, *KERAS_FILTERS)
_REDUCING_GAP = 3.0  # box-reduce by an integer factor first only when >= 3x larger: fast, no visible loss
_DRAFT_FACTOR = 2    # reduced-DCT output stays >= 2x the target in both dimensions
_WHITE = 255
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {  # EXIF orientation -> transpose, as in ImageOps.exif_transpose
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


# --------------------------------------------------------------------------------------------------
# one image
# --------------------------------------------------------------------------------------------------

def load_image(path: str | os.PathLike, spec: ImageSpec) -> np.ndarray:
    """Decode one photo into a (size, size, 3) uint8 RGB array, upright and resized as `spec` says.

    `spec.resize`: "squash" maps the whole photo onto the square (aspect ratio not kept, nothing cut);
    "center_crop" scales the shorter side to the size and keeps the central square. `spec.interpolation`: one of
    INTERPOLATIONS (module docstring). `spec.max_pixels`: refuse images whose header declares more pixels (None:
    no limit). Raises `DataError` naming `path` and the reason for any file that cannot be decoded.
    """
    path = Path(path)
    _check_spec(spec)
    _check_file(path)
    _lift_pillow_limit(spec.max_pixels)
    draft = spec.size if spec.interpolation == FAST else None
    with _decoded(path, draft, spec.max_pixels) as im:  # close() invalidates `im`
        return _resize(_to_rgb(_reduce_early(im, spec.size, path), path), spec)


def pixels_of(image: Image.Image | np.ndarray, spec: ImageSpec, *, name: str = "image") -> np.ndarray:
    """`load_image` for a photo already in memory: a PIL image (its EXIF orientation applied, as for a file)
    or a uint8 array of shape (H, W), (H, W, 3) or (H, W, 4) (grey, RGB, RGBA). The same conversion and resize
    as a file, except JPEG draft decoding (the pixels are decoded already): with `bicubic_fast`, a JPEG at
    least twice the size may differ slightly from its file's scores. `name` labels errors.
    """
    _check_spec(spec)
    if isinstance(image, np.ndarray):
        image = _from_array(image, name)
    elif not isinstance(image, Image.Image):
        raise DataError(f"{name}: a {type(image).__name__}, not a photo (a path, a PIL image or a uint8 array)")
    try:
        image.load()
        upright = _orient(image)
    except Exception as e:  # noqa: BLE001 - a lazily opened PIL image decodes here: a bad file, as for paths
        raise DataError(f"{name}: {_reason(e)}") from e
    path = Path(name)
    return _resize(_to_rgb(_reduce_early(upright, spec.size, path), path), spec)


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    """A uint8 grey, RGB or RGBA array as a PIL image; anything else is refused naming its dtype and shape."""
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))) \
            or 0 in array.shape:
        raise DataError(f"{name}: a {array.dtype} array of shape {array.shape}; photos in memory are uint8 "
                        "arrays of shape (H, W), (H, W, 3) RGB or (H, W, 4) RGBA")
    return Image.fromarray(np.ascontiguousarray(array))


def _check_spec(spec: ImageSpec) -> None:
    """Fail on a bad call before touching any file, so it is not reported as a bad image."""
    size = spec.size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"image size must be a positive integer, got {size!r}")
    if spec.resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {spec.resize!r}")
    if spec.interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {spec.interpolation!r}")


def _check_file(path: Path) -> None:
    """Name the common non-decoder failures plainly instead of through Pillow's messages."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: missing file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e.strerror or e})") from None
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")


def _lift_pillow_limit(max_pixels: int | None) -> None:
    """Make `max_pixels` the limit that applies.

    Pillow checks its own process-wide `Image.MAX_IMAGE_PIXELS` inside `Image.open`, before we can
    look at the header. When the configured limit is larger (or None), Pillow's is raised to match
    (never lowered), so a photo the config allows is not refused by a second, hidden limit.
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and (max_pixels is None or max_pixels > current):
        Image.MAX_IMAGE_PIXELS = max_pixels


class _decoded:
    """Context manager: the opened, size-checked, drafted (when `draft_size` is given), fully decoded and
    upright image.

    Every exception raised by Pillow while reading the file becomes a `DataError`: decoders raise
    many types on corrupt data (OSError, SyntaxError, struct.error, EOFError, ...), and all of them
    mean the same thing to us, a bad file. Our own code (conversion, resize) runs outside this block
    so that its bugs are not mistaken for bad images.
    """

    def __init__(self, path: Path, draft_size: int | None, max_pixels: int | None) -> None:
        self.path, self.draft_size, self.max_pixels = path, draft_size, max_pixels
        self.file: Image.Image | None = None

    def __enter__(self) -> Image.Image:
        try:
            self.file = Image.open(self.path)
            _check_pixels(self.file, self.max_pixels, self.path)
            if self.draft_size is not None:
                _draft(self.file, self.draft_size)
            self.file.load()
            return _orient(self.file)
        except DataError:
            self.__exit__()
            raise
        except Image.DecompressionBombError as e:
            self.__exit__()
            raise DataError(f"{self.path}: {_bomb_reason(e, self.max_pixels)}") from None
        except Exception as e:  # noqa: BLE001 - see the class docstring
            self.__exit__()
            raise DataError(f"{self.path}: {_reason(e)}") from e

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


def _reason(e: Exception) -> str:
    """A short, user-facing reason for a decoder exception."""
    msg = str(e)
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression bomb refused by Pillow ({msg})"
    if isinstance(e, UnidentifiedImageError):
        return "not an image file (Pillow cannot identify the format)"
    if "truncated" in msg.lower() or isinstance(e, EOFError):
        return f"truncated image ({msg})" if msg else "truncated image"
    return f"corrupt image data ({type(e).__name__}: {msg})"


def _bomb_reason(e: Exception, max_pixels: int | None) -> str:
    """Pillow's own bomb error, told against the configured limit.

    Pillow refuses inside `Image.open`, before our header check, any image over twice its own limit,
    and names that doubled limit (357,913,940 by default). Its limit is never below `max_pixels`
    (`_lift_pillow_limit`), so such an image is over `images.max_pixels` too: say that.
    """
    if max_pixels is None:
        return _reason(e)
    found = re.search(r"\((\d+) pixels\)", str(e))
    size = f"{int(found.group(1))} pixels" if found else "the image"
    return f"decompression bomb refused: {size} > images.max_pixels = {max_pixels}"


def _check_pixels(im: Image.Image, max_pixels: int | None, path: Path) -> None:
    """Refuse decompression bombs from the header alone, before any pixel is decoded."""
    width, height = im.size
    if max_pixels is not None and width * height > max_pixels:
        raise DataError(f"{path}: decompression bomb refused: {width}x{height} = "
                        f"{width * height} pixels > images.max_pixels = {max_pixels}")


def _draft(im: Image.Image, size: int) -> None:
    """Let libjpeg decode JPEGs at 1/2, 1/4 or 1/8 scale, still >= 2x `size` on both sides.

    The request is square, so it holds whatever the EXIF orientation, and it covers center_crop
    too (the shorter side stays >= 2x `size`). Other formats ignore draft.
    """
    if im.format in ("JPEG", "MPO"):
        target = _DRAFT_FACTOR * size
        im.draft("RGB", (target, target))


def _orient(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, so portrait phone photos are upright.

    Same table as `ImageOps.exif_transpose`, without its copy of unrotated images and its EXIF
    rewrite. An unreadable EXIF block leaves the photo as stored (a viewer does the same): the
    pixels are fine, only the metadata is broken.
    """
    try:
        orientation = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - broken metadata, not broken pixels
        orientation = 1
    method = _TRANSPOSE.get(orientation)
    return im.transpose(method) if method is not None else im


# --------------------------------------------------------------------------------------------------
# reduction before conversion
# --------------------------------------------------------------------------------------------------

_BAND_BYTES = 16 << 20   # reduce in bands of about this size: a band's converted copy stays small


def _reduce_early(im: Image.Image, size: int, path: Path) -> Image.Image:
    """Box-reduce a photo that converts late (`_converts_late`) by an integer factor, band by band, keeping
    both sides >= _DRAFT_FACTOR x `size` (as `_draft` does for JPEGs); any other photo is returned as is.

    Each band is cropped, brought to a mode `reduce` averages correctly (`_reducible`: premultiplied for
    transparency) and reduced, so memory beyond the decoded photo is one band, not full-size copies.
    Float images are checked against [0, 1] here, at full size, since averaging could hide a bad value.
    """
    factor = min(im.size) // (_DRAFT_FACTOR * size)
    if factor < 2 or not _converts_late(im):
        return im
    if im.mode == "F":
        _check_float_range(path, *im.getextrema())   # NaN is skipped here; it survives the average
    width, height = im.size
    rows = max(1, _BAND_BYTES // (4 * width * factor)) * factor
    tops = range(0, height, rows)
    bands = [_reducible(im.crop((0, top, width, min(top + rows, height)))).reduce(factor) for top in tops]
    out = Image.new(bands[0].mode, (bands[0].width, sum(band.height for band in bands)))
    for top, band in zip(tops, bands):
        out.paste(band, (0, top // factor))
    return out


def _converts_late(im: Image.Image) -> bool:
    """Whether `_to_rgb` needs full-size copies for this mode: transparency, CMYK, 16/32-bit, float."""
    return (im.mode in _ALPHA_MODES or "transparency" in im.info or im.mode in _SIXTEEN_BIT_MODES
            or im.mode in ("F", "CMYK"))


def _reducible(band: Image.Image) -> Image.Image:
    """A band in a mode whose box average means what `_to_rgb` then reads: transparency as RGBA (reduce
    premultiplies it; palette indices cannot be averaged), 16-bit grey as 32-bit `I`; others unchanged."""
    if band.mode in _ALPHA_MODES or "transparency" in band.info:
        return band.convert("RGBA")
    return band.convert("I") if band.mode in _SIXTEEN_BIT_MODES else band


# --------------------------------------------------------------------------------------------------
# colour
# --------------------------------------------------------------------------------------------------

def _to_rgb(im: Image.Image, path: Path) -> Image.Image:
    """Convert any decoded mode to 8-bit RGB (see the module docstring for the choices)."""
    if im.mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_rgb(im)
    if im.mode == "F":
        return _float_to_rgb(im, path)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        return _composite_on_white(im.convert("RGBA"))
    if im.mode == "RGB":
        return im
    try:  # L, 1, P, CMYK (Pillow already undid Adobe's inverted CMYK), YCbCr, RGBX, ...
        return im.convert("RGB")
    except ValueError as e:
        raise DataError(f"{path}: unsupported image mode {im.mode} ({e})") from None


def _sixteen_bit_to_rgb(im: Image.Image) -> Image.Image:
    """Grey 16-bit -> 8-bit by round(v / 257), so 0 -> 0, 32896 -> 128, 65535 -> 255.

    Pillow's convert clips at 255 instead of scaling. Mode "I" (32-bit) is read as 16-bit data,
    clipped to [0, 65535]: that is what PNG and the usual TIFFs store in it.
    """
    v = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
    grey = ((2 * v + 257) // 514).astype(np.uint8)  # floor(v / 257 + 0.5)
    return Image.fromarray(np.repeat(grey[..., None], 3, axis=2))


def _float_to_rgb(im: Image.Image, path: Path) -> Image.Image:
    """Grey float in [0, 1] -> 8-bit by round(v * 255); any other range is refused (module docstring)."""
    v = np.asarray(im, dtype=np.float64)
    _check_float_range(path, float(v.min()), float(v.max()))     # NaN and inf carry into min / max
    grey = np.floor(v * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(np.repeat(grey[..., None], 3, axis=2))


def _check_float_range(path: Path, low: float, high: float) -> None:
    """Refuse a float image whose values are not all in [0, 1] (module docstring), NaN and inf included."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise DataError(f"{path}: 32-bit float image (mode F) with NaN or infinite pixels; "
                        f"convert it to an 8- or 16-bit image")
    if low < 0.0 or high > 1.0:
        raise DataError(f"{path}: 32-bit float image (mode F) with values in [{low:g}, {high:g}]; "
                        f"only float images in [0, 1] are read (0 = black, 1 = white): convert it "
                        f"to an 8- or 16-bit image")


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    """Composite RGBA onto white: out = (c * a + 255 * (255 - a)) / 255, rounded."""
    arr = np.asarray(rgba).astype(np.uint32)
    rgb, alpha = arr[..., :3], arr[..., 3:]
    out = (rgb * alpha + _WHITE * (255 - alpha) + 127) // 255
    return Image.fromarray(out.astype(np.uint8))


# --------------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------------

def _resize(rgb: Image.Image, spec: ImageSpec) -> np.ndarray:
    """Resize to size x size with the chosen filter (Pillow widens every filter but `nearest` when shrinking);
    `bicubic_fast` box-reduces by an integer factor first when the photo is >= 3x larger."""
    box = _crop_box(rgb.size) if spec.resize == "center_crop" else None
    size = (spec.size, spec.size)
    if spec.interpolation == FAST:
        out = rgb.resize(size, Image.Resampling.BICUBIC, box=box, reducing_gap=_REDUCING_GAP)
    else:
        out = rgb.resize(size, KERAS_FILTERS[spec.interpolation], box=box)
    return np.asarray(out, dtype=np.uint8)


def _crop_box(wh: tuple[int, int]) -> tuple[float, float, float, float]:
    """The central square, in source pixels: resize maps it onto the output (the kernel still reads
    the neighbours at its edges, exactly as resizing the shorter side and then cropping would)."""
    width, height = wh
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side
