"""Content types from the bytes themselves: an output is stored under what it is, not what a
server claims it is."""

from __future__ import annotations

_OCTET = {"", "application/octet-stream", "binary/octet-stream"}


def sniff_content_type(first: bytes) -> str | None:
    """Recognise PNG, JPEG, GIF, WEBP, AVIF and SVG from the first bytes; None otherwise."""
    if first.startswith(b"\x89PNG\r\n\x1a\n") or first.startswith(b"\x89PNG"):
        return "image/png"
    if first.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if first.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(first) >= 12 and first[:4] == b"RIFF" and first[8:12] == b"WEBP":
        return "image/webp"
    if len(first) >= 12 and first[4:8] == b"ftyp" and first[8:12] in (b"avif", b"avis"):
        return "image/avif"
    head = first.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith((b"<?xml", b"<!doctype svg")) and b"<svg" in head):
        return "image/svg+xml"
    return None


def choose_type(declared: str, first: bytes) -> str:
    media = declared.split(";", 1)[0].strip().lower()
    sniffed = sniff_content_type(first)
    if media in _OCTET:
        return sniffed or "application/octet-stream"
    if media.startswith("image/") and sniffed != media:
        # The bytes decide: an "image" whose bytes are no image we know is stored as opaque bytes,
        # never served back under a type a browser would render.
        return sniffed or "application/octet-stream"
    return media
