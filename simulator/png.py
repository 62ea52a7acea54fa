"""Tiny, valid, deterministic images (PNG via zlib+struct; SVG as text) derived from an id."""

from __future__ import annotations

import hashlib
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LONG_SIDE = 64


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def image_size(
    aspect_ratio: str | None, width: int | None = None, height: int | None = None
) -> tuple[int, int]:
    """Pixel size with a long side of 64 keeping the asked proportions (16:9 -> 64x36)."""
    w, h = 1.0, 1.0
    if width and height:
        w, h = float(width), float(height)
    elif aspect_ratio and ":" in aspect_ratio:
        left, _, right = aspect_ratio.partition(":")
        try:
            w, h = float(left), float(right)
        except ValueError:
            w, h = 1.0, 1.0
    if w <= 0 or h <= 0:
        w, h = 1.0, 1.0
    if w >= h:
        return LONG_SIDE, max(1, round(LONG_SIDE * h / w))
    return max(1, round(LONG_SIDE * w / h)), LONG_SIDE


def make_png(key: str, width: int = LONG_SIDE, height: int = LONG_SIDE) -> bytes:
    """An RGB gradient whose colours and stripe come from sha256(key): unique per key, stable."""
    digest = hashlib.sha256(key.encode()).digest()
    r0, g0, b0, r1, g1, b1, stripe = digest[:7]
    span_x, span_y = max(1, width - 1), max(1, height - 1)
    reds = [(r0 + (r1 - r0) * x // span_x) & 0xFF for x in range(width)]
    blues = [(b0 + (b1 - b0) * d // (span_x + span_y)) & 0xFF for d in range(width + height)]
    rows = bytearray()
    for y in range(height):
        green = (g0 + (g1 - g0) * y // span_y) & 0xFF
        row = bytearray(b"\x00")  # filter type: none
        for x in range(width):
            if (x + y + stripe) % 16 == 0:
                row += bytes((digest[(x + 7) % 32], digest[(y + 11) % 32], digest[(x + y) % 32]))
            else:
                row += bytes((reds[x], green, blues[x + y]))
        rows += row
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _chunk(b"IEND", b"")
    )


def make_svg(key: str, width: int = LONG_SIDE, height: int = LONG_SIDE) -> bytes:
    colour = hashlib.sha256(key.encode()).hexdigest()[:6]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect width="100%" height="100%" fill="#{colour}"/><!-- {key} --></svg>'
    ).encode()


def check_png(data: bytes) -> tuple[int, int]:
    """Parse and verify a PNG (signature, chunk CRCs, IHDR/IDAT/IEND, pixel data); return (w, h)."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("bad PNG signature")
    pos, kinds, idat = len(PNG_SIGNATURE), [], b""
    width = height = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"bad CRC in {kind!r}")
        kinds.append(kind)
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    if kinds[0] != b"IHDR" or kinds[-1] != b"IEND" or b"IDAT" not in kinds:
        raise ValueError(f"bad chunk order {kinds!r}")
    if len(zlib.decompress(idat)) != height * (1 + 3 * width):
        raise ValueError("pixel data size mismatch")
    return width, height
