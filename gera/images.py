"""Image files → PIL images: the one way GeRA opens an image someone gave it.

Files may come from anyone (an upload to a public app), so ``open_image``:

* decodes only the documented formats (``FORMATS``): PIL can read dozens more, each one more
  parser exposed to hostile bytes;
* refuses more than ``MAX_PIXELS`` from the header, before decoding: a small PNG can claim
  20,000 × 20,000 pixels (1.2 GB as RGB). PIL's own ``DecompressionBombError`` (past about
  179 megapixels) becomes the same clear error;
* shrinks while decoding: a JPEG is decoded at a reduced scale where it can be (``draft``), and
  every image is cut to ``MAX_SIDE`` pixels on its longest side before anything else holds it.
  The encoders look at 112-384 px; a 1024 px copy keeps what they and the galleries need while
  a 12-megapixel photo holds 2 MB instead of 36.

``check_image`` runs the same checks without decoding pixels, for validating many files fast.
A leaf module: PIL and ``gera.errors`` only.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from gera.errors import GeraError

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
MAX_PIXELS = 40_000_000  # 40 megapixels: beyond any phone photo, far below a bomb
MAX_SIDE = 1024
_FIX = "Use a PNG, JPEG, WebP, GIF or BMP image of at most 40 megapixels."


class BadImage(GeraError):
    """An unusable image file. ``why`` says what is wrong in a few words ("too large (…)"), for
    callers that list many problems at once; ``str()`` is the full message with the fix."""

    def __init__(self, what: str, why: str, fix: str = _FIX):
        super().__init__(f"{what} is {why}. {fix}")
        self.why = why


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent areas (emoji, icons) on white rather than on black."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def _too_large(what: str, size: tuple[int, int] | None) -> BadImage:
    shown = f"{size[0]} × {size[1]} pixels, " if size else ""
    return BadImage(what, f"too large ({shown}over the {MAX_PIXELS // 1_000_000} megapixel limit)",
                    "Scale it down (a few megapixels is plenty) and try again.")


def _open(path: Path, what: str) -> Image.Image:
    """The image at ``path``, opened (header read, no pixels decoded) and size-checked."""
    try:
        # Between MAX_PIXELS and PIL's own limit PIL only warns; the check below refuses those.
        image = Image.open(path, formats=FORMATS)
    except Image.DecompressionBombError:
        raise _too_large(what, None) from None
    except UnidentifiedImageError:
        raise BadImage(what, "not an image in a readable format (PNG, JPEG, WebP, GIF or "
                                  "BMP)") from None
    except FileNotFoundError:
        raise BadImage(what, "not found", "Check the file name.") from None
    except Exception as err:  # noqa: BLE001 - PIL's parsers raise many types for damaged files
        raise BadImage(what, f"a damaged image ({type(err).__name__})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise _too_large(what, image.size)
    return image


def check_image(path: str | Path, what: str | None = None) -> None:
    """Raise ``BadImage`` unless ``path`` is an image ``open_image`` accepts, judged from its
    header and structure without decoding pixels (fast; a truncated JPEG still passes, and
    ``open_image`` reports it). ``what`` names the file in messages (default: its path)."""
    path = Path(path)
    what = what or f"Image {path}"
    image = _open(path, what)
    try:
        image.verify()
    except Exception as err:  # noqa: BLE001 - as in _open
        raise BadImage(what, f"a damaged image ({type(err).__name__})") from None
    finally:
        image.close()


def open_image(path: str | Path, what: str | None = None) -> Image.Image:
    """The image at ``path`` as an RGB ``PIL.Image``: upright (EXIF rotation applied),
    transparency on white, at most ``MAX_SIDE`` pixels on its longest side.

    Raises ``BadImage`` (a ``GeraError``) for another format, more than ``MAX_PIXELS`` or a
    damaged file. ``what`` names the file in messages (default: its path).
    """
    path = Path(path)
    what = what or f"Image {path}"
    image = _open(path, what)
    try:
        with image:
            width, height = image.size
            scale = MAX_SIDE / max(width, height)
            if image.format == "JPEG" and scale < 1:
                # Decode at 1/2, 1/4 or 1/8 scale where that still covers the final size.
                image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
            # Keeps the aspect ratio, never enlarges; bilinear, as the encoders resize.
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.BILINEAR)
            upright = ImageOps.exif_transpose(image)  # a copy, detached from the file
            return to_rgb(upright)
    except Image.DecompressionBombError:
        raise _too_large(what, None) from None
    except Exception as err:  # noqa: BLE001 - as in _open
        raise BadImage(what, f"a damaged image ({type(err).__name__}: {err})") from None
