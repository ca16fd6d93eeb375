"""Pages work offline: Voila's template links Font Awesome from a public CDN, although its own
bundle already carries the icon font, so those links are dropped from every HTML response."""

from __future__ import annotations

import re

from tornado import httputil
from tornado.web import OutputTransform

_CDN_LINK = re.compile(rb"<link\b[^>]*\bhref=\"https?://cdn\.jsdelivr\.net/[^\"]*\"[^>]*>")


class NoCdnLinks(OutputTransform):
    """Remove CDN stylesheet links from HTML pages as they stream out."""

    def __init__(self, request: httputil.HTTPServerRequest) -> None:
        self._html = False

    def transform_first_chunk(
        self, status_code: int, headers: httputil.HTTPHeaders, chunk: bytes, finishing: bool
    ) -> tuple[int, httputil.HTTPHeaders, bytes]:
        """Only HTML is touched; a fixed length is corrected when the page came in one piece."""
        self._html = headers.get("Content-Type", "").startswith("text/html")
        if self._html:
            chunk = _CDN_LINK.sub(b"", chunk)
            if "Content-Length" in headers:
                headers["Content-Length"] = str(len(chunk))
        return status_code, headers, chunk

    def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
        """Voila flushes the page's head on its own, so a link is never split across chunks."""
        return _CDN_LINK.sub(b"", chunk) if self._html else chunk
