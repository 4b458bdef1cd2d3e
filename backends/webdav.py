"""webdav:// and webdavs:// — a collection on a WebDAV server (requests).

`webdav[s]://user[:password]@host[:port]/path`; the password from the URL or
BACKEND_PASSWORD / FTP_PASSWORD; Basic authentication, Digest when the server asks only for
it. PROPFIND (depth 1) lists, PUT uploads (creating missing collections with MKCOL), GET
downloads, DELETE deletes and MOVE with Overwrite renames, so the atomic-put wrapper can
upload to a temporary name first. Servers answer success as 200, 201 or 204: all are
accepted. Each thread keeps one keep-alive session, and every response body is read to the
end so its connection goes back to the pool. TLS is verified (--ssl-cacert-file,
--ssl-no-check-certificate).
"""

from __future__ import annotations

import threading
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
import urllib3
from requests.auth import HTTPBasicAuth, HTTPDigestAuth

from duplicity_ng.backends.base import (
    BackendAuthError,
    BackendCertificateError,
    BackendConnectionError,
    Capabilities,
    ParsedUrl,
    RemoteFile,
    register,
    url_password,
)
from duplicity_ng.backends.options import BackendOptions
from duplicity_ng.errors import (
    BackendError,
    BackendNoSpaceError,
    BackendNotFoundError,
    BackendPermissionError,
    CommandLineError,
)

_OK = (200, 201, 204)
_DAV = "{DAV:}"
_PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/>'
    b"</D:prop></D:propfind>"
)
_BLOCK = 1 << 20


class WebDavBackend:
    capabilities = Capabilities(rename=True, stat=True, ranged_get=True, max_concurrency=4)

    def __init__(self, url: ParsedUrl, options: BackendOptions) -> None:
        if not url.host:
            raise CommandLineError(f"No host in {url.display}", "use webdav://user@host/path")
        self.display_url = url.display
        host = f"[{url.host}]" if ":" in url.host else url.host
        port = f":{url.port}" if url.port else ""
        scheme = "https" if url.scheme == "webdavs" else "http"
        self._origin = f"{scheme}://{host}{port}"
        # The URL's path is a URL path already: keep its percent-escapes as they are.
        self._parts = [p for p in url.path.split("/") if p]
        self._base = "/" + "".join(p + "/" for p in self._parts)
        self._options = options
        password = url_password(url)
        self._credentials = (url.user, password or "") if url.user else None
        self._digest = False  # switched on when the server offers only Digest
        self._lock = threading.Lock()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._folder_ready = False
        if options.ssl_no_check_certificate:
            # The user chose this; urllib3 would otherwise warn on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    # -- HTTP ------------------------------------------------------------------------------

    def _auth(self) -> requests.auth.AuthBase | None:
        if self._credentials is None:
            return None
        user, password = self._credentials
        return HTTPDigestAuth(user, password) if self._digest else HTTPBasicAuth(user, password)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = "duplicity-ng"
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        session.auth = self._auth()
        return session

    def _drop_session(self) -> None:
        session = getattr(self._local, "session", None)
        if session is None:
            return
        self._local.session = None
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)
        session.close()

    def _url(self, name: str | None = None) -> str:
        if name is None:
            return self._origin + self._base
        if not name or "/" in name or name in (".", ".."):
            raise BackendError(f"Refusing unsafe remote file name {name!r}")
        return self._origin + self._base + urllib.parse.quote(name, safe="")

    @contextmanager
    def _request(
        self,
        method: str,
        url: str,
        what: str,
        body: Path | bytes | None = None,
        stream: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Iterator[requests.Response]:
        """One request; the body of the answer is read to its end when the block exits."""
        response = self._send(method, url, what, body, stream, headers)
        if response.status_code == 401 and self._offers_only_digest(response):
            response.close()
            self._digest = True
            response = self._send(method, url, what, body, stream, headers)
        try:
            yield response
        finally:
            try:
                for _ in response.iter_content(_BLOCK):
                    pass  # drain, so the connection can be reused
            except (requests.RequestException, RuntimeError):
                pass  # already consumed, or the connection is gone anyway
            response.close()
            if body is not None and response.status_code >= 400:
                # A server refusing a request early may not have read its body: the rest of
                # it would be taken for the next request on this connection.
                self._drop_session()

    def _offers_only_digest(self, response: requests.Response) -> bool:
        offer = response.headers.get("WWW-Authenticate", "").lower()
        return (
            self._credentials is not None
            and not self._digest
            and "digest" in offer
            and "basic" not in offer
        )

    def _send(
        self,
        method: str,
        url: str,
        what: str,
        body: Path | bytes | None,
        stream: bool,
        headers: dict[str, str] | None,
    ) -> requests.Response:
        timeout = self._options.timeout
        # Per request: a session-wide `verify` loses against REQUESTS_CA_BUNDLE.
        verify = self._options.tls_verify()
        tls = {} if verify is True else {"verify": verify}
        try:
            if isinstance(body, Path):
                with open(body, "rb") as data:
                    return self._session().request(
                        method,
                        url,
                        data=data,
                        headers=headers,
                        timeout=timeout,
                        stream=stream,
                        **tls,
                    )
            return self._session().request(
                method, url, data=body, headers=headers, timeout=timeout, stream=stream, **tls
            )
        except requests.exceptions.SSLError as exc:
            raise BackendCertificateError(
                f"Cannot {what} on {self.display_url}: TLS certificate not trusted",
                "use --ssl-cacert-file FILE, or --ssl-no-check-certificate for a test server",
            ) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise BackendConnectionError(
                f"Cannot {what} on {self.display_url}: {_reason(exc)}"
            ) from exc
        except requests.RequestException as exc:
            raise BackendError(f"Cannot {what} on {self.display_url}: {_reason(exc)}") from exc

    def _status_error(self, response: requests.Response, what: str) -> BackendError:
        code = response.status_code
        where = f"Cannot {what} on {self.display_url}"
        status = f"HTTP {code} {response.reason or ''}".rstrip()
        if code == 401:
            return BackendAuthError(f"{where}: {status}", "check the user name and password")
        if code == 403:
            return BackendPermissionError(f"{where}: {status}")
        if code in (404, 410):
            return BackendNotFoundError(f"{where}: no such file or folder ({status})")
        if code in (507, 413):
            return BackendNoSpaceError(f"{where}: {status}")
        return BackendError(f"{where}: {status}")

    # -- folders ---------------------------------------------------------------------------

    def _make_collections(self) -> None:
        """MKCOL the folder and its missing parents, below the deepest one that exists
        (the server may refuse MKCOL on its share's root, existing or not)."""
        paths = [
            "/" + "".join(p + "/" for p in self._parts[: i + 1]) for i in range(len(self._parts))
        ]
        missing = []
        for path in reversed(paths):
            if self._propfind(self._origin + path, "0", "look up a folder") is not None:
                break
            missing.append(path)
        for path in reversed(missing):
            with self._request("MKCOL", self._origin + path, "create a folder") as r:
                # 405: it exists already (made meanwhile by another worker).
                if r.status_code not in (*_OK, 405):
                    raise self._status_error(r, f"create folder {urllib.parse.unquote(path)}")

    # -- the contract ----------------------------------------------------------------------

    def _propfind(self, url: str, depth: str, what: str) -> list[tuple[str, RemoteFile]] | None:
        headers = {"Depth": depth, "Content-Type": "application/xml; charset=utf-8"}
        with self._request("PROPFIND", url, what, _PROPFIND_BODY, headers=headers) as r:
            if r.status_code == 404:
                return None
            if r.status_code != 207:
                raise self._status_error(r, what)
            content = r.content
        try:
            return _parse_multistatus(content)
        except ET.ParseError as exc:
            raise BackendError(f"Cannot {what} on {self.display_url}: bad PROPFIND answer") from exc

    def list(self) -> list[RemoteFile]:
        entries = self._propfind(self._url(), "1", "list files")
        if entries is None:
            return []  # the folder is created by the first put
        base = urllib.parse.unquote(self._base).rstrip("/")
        return [f for path, f in entries if path != base]

    def put(self, local: Path, name: str) -> None:
        url = self._url(name)
        what = f"upload {name}"
        if not self._folder_ready:
            # Create missing folders first rather than after a refused PUT: not every
            # server reads the body of a PUT it refuses.
            if self._propfind(self._url(), "0", "look up the folder") is None:
                self._make_collections()
            self._folder_ready = True
        with self._request("PUT", url, what, local) as r:
            status = r.status_code
            if status in _OK:
                return
            if status not in (404, 409):
                raise self._status_error(r, what)
        self._make_collections()  # 409 Conflict (or 404): the folder has gone since
        with self._request("PUT", url, what, local) as r:
            if r.status_code not in _OK:
                raise self._status_error(r, what)

    def get(self, name: str, local: Path) -> None:
        what = f"download {name}"
        with self._request("GET", self._url(name), what, stream=True) as r:
            if r.status_code != 200:
                raise self._status_error(r, what)
            expected = r.headers.get("Content-Length")
            written = 0
            try:
                with open(local, "wb") as out:
                    for block in r.iter_content(_BLOCK):
                        out.write(block)
                        written += len(block)
            except requests.RequestException as exc:
                raise BackendConnectionError(
                    f"Cannot {what} on {self.display_url}: {_reason(exc)}"
                ) from exc
        if expected is not None and expected.isdigit() and int(expected) != written:
            raise BackendConnectionError(
                f"Cannot {what} on {self.display_url}: got {written} of {expected} bytes"
            )

    def delete(self, names: list[str]) -> None:
        for name in names:
            what = f"delete {name}"
            with self._request("DELETE", self._url(name), what) as r:
                if r.status_code not in (*_OK, 404):
                    raise self._status_error(r, what)

    def rename(self, src: str, dst: str) -> None:
        what = f"rename {src} to {dst}"
        headers = {"Destination": self._url(dst), "Overwrite": "T"}
        with self._request("MOVE", self._url(src), what, headers=headers) as r:
            if r.status_code not in _OK:
                raise self._status_error(r, what)

    def stat(self, name: str) -> RemoteFile | None:
        entries = self._propfind(self._url(name), "0", f"look up {name}")
        if not entries:
            return None
        return RemoteFile(name, entries[0][1].size)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        what = f"download part of {name}"
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        with self._request("GET", self._url(name), what, headers=headers) as r:
            if r.status_code == 206:
                return r.content
            if r.status_code == 200:  # the server ignored the range
                return r.content[offset : offset + length]
            if r.status_code == 416:
                return b""
            raise self._status_error(r, what)

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
        self._local = threading.local()


def _reason(exc: BaseException) -> str:
    # requests' messages repeat the URL (without credentials: those travel in headers);
    # the innermost reason is the readable part.
    inner = exc
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    text = str(inner) or type(inner).__name__
    return text.split(": ", 1)[-1] if "Errno" in text else text


def _parse_multistatus(content: bytes) -> list[tuple[str, RemoteFile]]:
    """(unquoted path without trailing slash, file) for every non-collection response."""
    files = []
    for response in ET.fromstring(content).iter(f"{_DAV}response"):
        href = (response.findtext(f"{_DAV}href") or "").strip()
        if "://" in href:  # an absolute URL: keep its path
            rest = href.split("://", 1)[1]
            href = rest[rest.find("/") :] if "/" in rest else "/"
        # Not urlsplit: some servers leave '#' or '?' in names unescaped.
        path = urllib.parse.unquote(href).rstrip("/")
        size, is_collection = 0, False
        for propstat in response.iter(f"{_DAV}propstat"):
            if " 200" not in (propstat.findtext(f"{_DAV}status") or " 200"):
                continue
            prop = propstat.find(f"{_DAV}prop")
            if prop is None:
                continue
            kind = prop.find(f"{_DAV}resourcetype")
            if kind is not None and kind.find(f"{_DAV}collection") is not None:
                is_collection = True
            length = prop.findtext(f"{_DAV}getcontentlength")
            if length and length.strip().isdigit():
                size = int(length.strip())
        if is_collection:
            files.append((path, None))
        else:
            files.append((path, RemoteFile(path.rsplit("/", 1)[-1], size)))
    return [(p, f) for p, f in files if f is not None]


@register("webdav", "webdavs")
def open_webdav(url: ParsedUrl, options: BackendOptions) -> WebDavBackend:
    return WebDavBackend(url, options)
