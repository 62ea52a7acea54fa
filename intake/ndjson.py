"""Split a byte stream into numbered NDJSON lines as it arrives, holding at most one line (up to a cap).

A line longer than the cap is reported as too long (None) and skipped to its end without being kept,
so a huge line costs no memory. Blank lines advance the line number but are not yielded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

Line = tuple[int, bytes | None]  # (1-based line number, its bytes without the newline, or None if too long)


class LineSplitter:
    def __init__(self, max_line_bytes: int) -> None:
        self._max = max_line_bytes
        self._partial = bytearray()
        self._skipping = False  # inside a line already known to be too long
        self._number = 0

    def feed(self, chunk: bytes) -> list[Line]:
        out: list[Line] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._keep(chunk[start:])
                return out
            self._keep(chunk[start:end])
            self._emit(out)
            start = end + 1

    def end(self) -> list[Line]:
        """The last line, when the stream does not end with a newline."""
        out: list[Line] = []
        if self._partial or self._skipping:
            self._emit(out)
        return out

    def _keep(self, piece: bytes) -> None:
        if self._skipping:
            return
        if len(self._partial) + len(piece) > self._max:
            self._skipping = True
            self._partial.clear()
            return
        self._partial += piece

    def _emit(self, out: list[Line]) -> None:
        self._number += 1
        if self._skipping:
            out.append((self._number, None))
        elif self._partial.strip():
            out.append((self._number, bytes(self._partial)))
        self._partial.clear()
        self._skipping = False


def split_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[Line]:
    """Every numbered line of a chunked byte stream (a file read in blocks, a request body)."""
    splitter = LineSplitter(max_line_bytes)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.end()
