"""Noto Color Emoji (Debian ``fonts-noto-color-emoji``): which single code points it draws, and
fast scene rendering with Pillow.

The font is a CBDT bitmap font: FreeType loads it only at its strike size (109), so every glyph is
drawn once at that size and scaled down; scaled glyphs are memoised per (code point, size).
"""
from __future__ import annotations

import struct
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from gera.errors import GeraError

DEFAULT_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
STRIKE_SIZE = 109
# Categories that are never a picture on their own: format/space/combining/modifier/digit.
_SKIP_CATEGORIES = {"Cf", "Zs", "Mn", "Me", "Sk", "Nd"}
_KEYCAP_BASES = {ord("#"), ord("*")}
_REGIONAL_INDICATORS = range(0x1F1E6, 0x1F1FF + 1)


def _missing_font(path: Path) -> GeraError:
    return GeraError(f"The emoji font {path} is missing. Install it with "
                     "`apt-get install fonts-noto-color-emoji` (or pass font_path= to another copy "
                     "of NotoColorEmoji.ttf).")


def _tables(data: bytes) -> dict[bytes, tuple[int, int]]:
    (n_tables,) = struct.unpack(">H", data[4:6])
    out = {}
    for i in range(n_tables):
        tag, _, offset, length = struct.unpack(">4sIII", data[12 + 16 * i:28 + 16 * i])
        out[tag] = (offset, length)
    return out


def _cmap_code_points(data: bytes, cmap_offset: int) -> set[int]:
    """Code points mapped by the cmap's format-12 (full Unicode) or format-4 (BMP) subtables.

    Read by hand because fontTools is not a dependency; these two formats are all a Unicode
    font needs.
    """
    (n_sub,) = struct.unpack(">H", data[cmap_offset + 2:cmap_offset + 4])
    points: set[int] = set()
    for i in range(n_sub):
        base = cmap_offset + 4 + 8 * i
        (sub_offset,) = struct.unpack(">I", data[base + 4:base + 8])
        start = cmap_offset + sub_offset
        (fmt,) = struct.unpack(">H", data[start:start + 2])
        if fmt == 12:
            (n_groups,) = struct.unpack(">I", data[start + 12:start + 16])
            for g in range(n_groups):
                group = start + 16 + 12 * g
                first, last, _ = struct.unpack(">III", data[group:group + 12])
                points.update(range(first, last + 1))
        elif fmt == 4:
            (seg_x2,) = struct.unpack(">H", data[start + 6:start + 8])
            ends = struct.unpack(f">{seg_x2 // 2}H", data[start + 14:start + 14 + seg_x2])
            starts_at = start + 16 + seg_x2
            starts = struct.unpack(f">{seg_x2 // 2}H", data[starts_at:starts_at + seg_x2])
            for first, last in zip(starts, ends):
                if first != 0xFFFF:
                    points.update(range(first, last + 1))
    return points


@lru_cache(maxsize=4)
def font_inventory(font_path: str) -> tuple[str, list[tuple[int, str]]]:
    """``(fingerprint, [(code point, lowercase name), ...])`` for the single code points the font
    draws as a picture, sorted by code point.

    Skipped: unnamed code points, format characters (ZWJ, tags), skin-tone modifiers, hair
    components, regional indicators (flags need two), keycap bases (digits, ``#``, ``*``).
    ``fingerprint`` is the font's ``head.checkSumAdjustment``: it changes whenever the file does,
    so it goes into cache keys (another font version draws other pixels).
    """
    path = Path(font_path)
    if not path.is_file():
        raise _missing_font(path)
    data = path.read_bytes()
    tables = _tables(data)
    if b"cmap" not in tables or b"head" not in tables:
        raise GeraError(f"{path} is not a usable TrueType font (no cmap/head table). Reinstall it: "
                        "apt-get install --reinstall fonts-noto-color-emoji")
    head = tables[b"head"][0]
    fingerprint = data[head + 8:head + 12].hex()
    names = []
    for cp in sorted(_cmap_code_points(data, tables[b"cmap"][0])):
        ch = chr(cp)
        name = unicodedata.name(ch, "")
        if (not name or unicodedata.category(ch) in _SKIP_CATEGORIES or cp in _KEYCAP_BASES
                or cp in _REGIONAL_INDICATORS or name.startswith("EMOJI COMPONENT")):
            continue
        names.append((cp, name.lower()))
    return fingerprint, names


class EmojiRenderer:
    """Draws scenes of emoji on a plain background. Thread-safe; glyphs are memoised.

    Parameters
    ----------
    font_path : the Noto Color Emoji TTF.
    canvas : side of the square RGB output, in pixels.
    cache_size : how many scaled glyphs (code point × size) to keep.
    """

    def __init__(self, font_path: str | Path = DEFAULT_FONT, canvas: int = 112,
                 cache_size: int = 4096):
        path = Path(font_path)
        if not path.is_file():
            raise _missing_font(path)
        self.canvas = canvas
        self._font = ImageFont.truetype(str(path), STRIKE_SIZE)
        # FreeType faces are not safe to share across threads; scaling and pasting are.
        self._lock = threading.Lock()
        self.glyph = lru_cache(maxsize=cache_size)(self._scaled_glyph)

    def _strike_glyph(self, cp: int) -> Image.Image:
        ch = chr(cp)
        with self._lock:
            _, _, right, bottom = self._font.getbbox(ch)
            img = Image.new("RGBA", (max(right, 1), max(bottom, 1)), (0, 0, 0, 0))
            ImageDraw.Draw(img).text((0, 0), ch, font=self._font, embedded_color=True)
        box = img.getchannel("A").getbbox()
        if box is None:
            raise GeraError(f"The emoji font draws nothing for U+{cp:04X}. Reinstall "
                            "fonts-noto-color-emoji, or drop this code point.")
        return img.crop(box)

    def _scaled_glyph(self, cp: int, px: int) -> Image.Image:
        """The glyph scaled so its longer side is ``px`` (RGBA; Pillow resamples premultiplied)."""
        img = self._strike_glyph(cp)
        scale = px / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        return img.resize(size, Image.Resampling.LANCZOS)

    def render(self, background: tuple[int, int, int],
               items: Sequence[tuple[int, int, tuple[int, int]]]) -> Image.Image:
        """An RGB canvas of colour ``background`` with each ``(code point, size px, (cx, cy))``
        pasted centred at ``(cx, cy)``, in the given order (later ones on top)."""
        img = Image.new("RGB", (self.canvas, self.canvas), background)
        for cp, px, (cx, cy) in items:
            glyph = self.glyph(cp, px)
            img.paste(glyph, (cx - glyph.width // 2, cy - glyph.height // 2), glyph)
        return img
