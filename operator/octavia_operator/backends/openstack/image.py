"""Glance: the amphora image (uploaded from a URL, adopted by ID, or adopted by tag).

Octavia boots the newest ACTIVE image carrying ``[controller_worker] amp_image_tag`` (filtered by
``amp_image_owner_id``), so the tag is what matters; this module makes sure the image the
deployment wants is that image, and reports its ID and owner.

Three modes, chosen by :class:`~octavia_operator.builders.cloud.ImageDesired`:

``url`` set
    The image is uploaded from the URL, *streamed* (the data passes through :class:`HashingReader`
    in chunks of at most :data:`CHUNK` bytes, never read whole into memory), as a private image
    owned by ``owner_project_id``, tagged ``[d.tag, "octavia-operator", "octavia-operator:owner=<uid>"]``,
    with the properties :data:`PROP_SOURCE_URL` (the URL without user:password) and
    :data:`PROP_SOURCE_CHECKSUM` (``d.checksum`` or ``""``), all set when the image record is
    created, before any data is sent. A rerun finds the active image with the same source
    properties and downloads nothing. An owned image from the current source stuck in
    ``queued``/``saving``/``importing``/``killed`` (a crash mid-upload) is deleted and the upload
    is redone. Older owned images carrying the tag are ``superseded``; they are deleted only
    when ``d.prune_superseded``.
``image_id`` set
    That image is adopted: it gets ``d.tag`` if it lacks it (a reported write), and is never deleted.
neither
    The newest active image carrying ``d.tag`` is adopted (that is the one Octavia boots); two
    with the same newest creation time are Ambiguous; none is ``ImageNotFound``.

The checksum (``d.checksum``, sha256/sha512/md5) is computed while the data streams and checked
before the last piece is sent, so an image with wrong data never becomes active (Octavia can
never boot it); the unfinished image is then deleted.

Errors: ``ImageNotFound``, ``ImageChecksumMismatch`` (the unfinished image is deleted),
``ImageDownloadFailed`` (URL unreachable, 4xx), TransientError for 5xx/timeouts of the download
and of Glance, ``Ambiguous``, ``OwnedByAnotherDeployment``.
"""
from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from ...builders.cloud import ImageDesired
from ...errors import StepError, TransientError
from .common import call, check_not_foreign, owned_by, owner_tag, owner_tags

PROP_SOURCE_URL = "octavia_operator_source_url"
PROP_SOURCE_CHECKSUM = "octavia_operator_source_checksum"
CONTAINER_FORMAT = "bare"
CHUNK = 256 * 1024            # largest piece of image data handed to the HTTP client at once
DOWNLOAD_TIMEOUT = 60.0       # seconds without data before a download is abandoned (transient)
UNFINISHED = {"queued", "saving", "importing", "uploading", "killed"}
HASH_ALGORITHMS = ("sha256", "sha512", "md5")


@dataclass
class ImageResult:
    """What :func:`ensure_image` found or did.

    image_id/owner_id: the image Octavia will boot and its owner project (amp_image_owner_id).
    created: an image was uploaded; adopted: the image is not ours (never deleted).
    superseded: IDs of the other active images carrying the tag (older uploads of ours, or
    other images); pruned: the superseded images of ours that were deleted (prune_superseded).
    changes: human-readable writes (upload, tag added, stale upload removed, ...).
    warnings: things the user should know that were not changed.
    """

    image_id: str
    owner_id: str | None
    created: bool = False
    adopted: bool = False
    superseded: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.image_id

    @property
    def wrote(self) -> bool:
        return self.created or bool(self.changes)


# ------------------------------------------------------------------------------------------
# download side

class Source(Protocol):
    """An opened download: ``read(n)`` returns at most n bytes (b"" at the end)."""

    length: int | None

    def read(self, n: int) -> bytes: ...

    def close(self) -> None: ...


Opener = Callable[[str], Source]


class DownloadError(Exception):
    """Raised by an opener (or a Source's read) when the download fails."""

    def __init__(self, message: str, transient: bool):
        super().__init__(message)
        self.transient = transient


def display_url(url: str) -> str:
    """The URL without ``user:password@`` (what is stored in properties and shown in messages)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class _RequestsSource:
    def __init__(self, resp: Any, url: str):
        self._resp = resp
        self._url = url
        cl = resp.headers.get("Content-Length")
        enc = (resp.headers.get("Content-Encoding") or "identity").lower()
        self.length = int(cl) if cl and cl.isdigit() and enc == "identity" else None

    def read(self, n: int) -> bytes:
        import requests
        import urllib3
        try:
            return self._resp.raw.read(n, decode_content=True)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise DownloadError(f"downloading {display_url(self._url)} failed mid-way: {type(exc).__name__}",
                                transient=True) from None

    def close(self) -> None:
        self._resp.close()


def http_opener(cacert: str | None = None, timeout: float = DOWNLOAD_TIMEOUT) -> Opener:
    """The default opener: a streaming ``requests`` GET (``cacert``: optional CA bundle file)."""

    def open_(url: str) -> Source:
        import requests
        shown = display_url(url)
        try:
            resp = requests.get(url, stream=True, timeout=(timeout, timeout),
                                verify=cacert if cacert else True)
        except requests.Timeout:
            raise DownloadError(f"downloading {shown} timed out", transient=True) from None
        except requests.RequestException as exc:
            raise DownloadError(f"cannot download {shown}: {type(exc).__name__}", transient=False) from None
        if resp.status_code >= 500 or resp.status_code == 429:
            resp.close()
            raise DownloadError(f"downloading {shown}: the server answered {resp.status_code}", transient=True)
        if resp.status_code >= 400:
            resp.close()
            raise DownloadError(f"downloading {shown}: the server answered {resp.status_code}", transient=False)
        return _RequestsSource(resp, url)

    return open_


class ChecksumMismatch(Exception):
    """Raised by HashingReader before it hands out the last piece of data with a wrong digest."""


class HashingReader:
    """A file-like view of a Source for the HTTP client: hands out at most ``chunk`` bytes per
    read, hashes everything that passes, counts bytes, and remembers the largest piece.

    With ``expected`` (a hex digest), the digest is checked before the LAST piece is handed out
    (when the length is known) or before reporting the end (chunked upload): on a mismatch read()
    raises ChecksumMismatch, so the upload never completes and Glance never activates bad data.
    A source that ends before its announced length raises a transient DownloadError.
    """

    def __init__(self, source: Source, algorithm: str | None, chunk: int = CHUNK, expected: str | None = None):
        self._source = source
        self._hash = hashlib.new(algorithm) if algorithm else None
        self._expected = expected if algorithm else None
        self._length = source.length
        self._chunk = chunk
        self.bytes = 0
        self.max_piece = 0
        self.finished = False
        self.error: BaseException | None = None
        if source.length is not None:
            self.len = source.length   # lets requests send Content-Length instead of chunked encoding

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        raise exc

    def _verify(self) -> None:
        if self._expected is not None and self.hexdigest() != self._expected:
            self._fail(ChecksumMismatch(self.hexdigest()))

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self._chunk:
            n = self._chunk
        if self._length is not None:
            n = max(0, min(n, self._length - self.bytes))
        try:
            data = self._source.read(n) if n else b""
        except BaseException as exc:
            self.error = exc
            raise
        if len(data) > n:   # a misbehaving source; keep the bound anyway
            self._fail(DownloadError("the download returned more data than asked for", transient=True))
        if not data:
            if self._length is not None and self.bytes != self._length:
                self._fail(DownloadError(f"the download ended after {self.bytes} of {self._length} bytes",
                                         transient=True))
            if self._length is None:
                self._verify()
            self.finished = True
            return b""
        self.bytes += len(data)
        self.max_piece = max(self.max_piece, len(data))
        if self._hash is not None:
            self._hash.update(data)
        if self._length is not None and self.bytes == self._length:
            self._verify()
        return data

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.read(self._chunk)
            if not data:
                return
            yield data

    def hexdigest(self) -> str | None:
        return self._hash.hexdigest() if self._hash is not None else None


def parse_checksum(checksum: str | None) -> tuple[str | None, str | None]:
    if not checksum:
        return None, None
    algo, _, value = checksum.partition(":")
    algo = algo.lower()
    if algo not in HASH_ALGORITHMS or not value:
        raise StepError("InvalidChecksum", f"checksum {checksum!r} is not <sha256|sha512|md5>:<hex>")
    return algo, value.lower()


# ------------------------------------------------------------------------------------------
# Glance side

def _created(img: Any) -> str:
    return img.created_at or ""


def _props(img: Any) -> dict:
    return dict(getattr(img, "properties", None) or {})


def _from_source(img: Any, url: str, checksum: str | None) -> bool:
    p = _props(img)
    return p.get(PROP_SOURCE_URL) == display_url(url) and (p.get(PROP_SOURCE_CHECKSUM) or "") == (checksum or "")


def _tagged(conn: Any, tag: str) -> list[Any]:
    return list(call(f"listing images tagged {tag!r}", lambda: list(conn.image.images(tag=tag))))


def _owned(conn: Any, uid: str) -> list[Any]:
    return list(call("listing the operator's images", lambda: list(conn.image.images(tag=owner_tag(uid)))))


def _delete(conn: Any, image_id: str, what: str) -> None:
    from openstack import exceptions as sdk

    def go() -> None:
        try:
            conn.image.delete_image(image_id, ignore_missing=True)
        except sdk.ConflictException:   # protected or in use: say so
            raise StepError("ImageInUse", f"cannot delete {what} {image_id}: Glance refused (protected?)") from None

    call(f"deleting {what} {image_id}", go)


def ensure_image(conn: Any, d: ImageDesired, uid: str, owner_project_id: str, *,
                 opener: Opener | None = None) -> ImageResult:
    """Make the image Octavia boots the one ``d`` asks for; see the module docstring.

    Guarantees: at most one upload per (URL, checksum); markers and source properties are set at
    creation; a converged call makes no write; images not carrying this uid's owner tag are never
    deleted; the returned image is ACTIVE.
    """
    if d.url:
        return _ensure_from_url(conn, d, uid, owner_project_id, opener or http_opener())
    if d.image_id:
        return _ensure_by_id(conn, d, uid)
    return _ensure_by_tag(conn, d, uid)


def _others(conn: Any, d: ImageDesired, current: Any) -> list[Any]:
    return sorted((i for i in _tagged(conn, d.tag) if i.id != current.id and i.status == "active"),
                  key=_created)


def _newer_warnings(others: list[Any], current: Any, d: ImageDesired) -> list[str]:
    out = []
    for o in others:
        if _created(o) > _created(current) and (o.owner == current.owner):
            out.append(f"image {o.name} ({o.id}) also carries the tag {d.tag!r} and is newer than {current.id}: "
                       "Octavia boots the newest tagged image; remove the tag from it")
    return out


def _ensure_by_id(conn: Any, d: ImageDesired, uid: str) -> ImageResult:
    from openstack import exceptions as sdk

    def get() -> Any:
        try:
            return conn.image.get_image(d.image_id)
        except sdk.NotFoundException:
            return None

    img = call(f"reading image {d.image_id}", get)
    if img is None:
        raise StepError("ImageNotFound", f"image {d.image_id} (amphora.image.id) does not exist or is not visible")
    check_not_foreign(img, uid, "image")
    if img.status != "active":
        raise StepError("ImageNotActive", f"image {img.name} ({img.id}) is {img.status}, not active")
    res = ImageResult(image_id=img.id, owner_id=img.owner, adopted=not owned_by(img, uid))
    if d.tag not in (img.tags or []):
        call(f"tagging image {img.id}", conn.image.add_tag, img, d.tag)
        res.changes.append(f"added tag {d.tag!r} to image {img.name} ({img.id})")
    others = _others(conn, d, img)
    res.superseded = [o.id for o in others]
    res.warnings = _newer_warnings(others, img, d)
    return res


def _ensure_by_tag(conn: Any, d: ImageDesired, uid: str) -> ImageResult:
    active = sorted((i for i in _tagged(conn, d.tag) if i.status == "active"), key=_created, reverse=True)
    if not active:
        raise StepError("ImageNotFound", f"no active image carries the tag {d.tag!r}: upload an amphora image "
                        f"with that tag, or set amphora.image.url (the operator uploads it) or amphora.image.id")
    newest = [i for i in active if _created(i) == _created(active[0])]
    if len(newest) > 1:
        from .common import Ambiguous
        raise Ambiguous(f"newest image tagged {d.tag!r}", newest)
    img = active[0]
    check_not_foreign(img, uid, "image")
    return ImageResult(image_id=img.id, owner_id=img.owner, adopted=not owned_by(img, uid),
                       superseded=[i.id for i in reversed(active[1:])])


def _ensure_from_url(conn: Any, d: ImageDesired, uid: str, owner_project_id: str, opener: Opener) -> ImageResult:
    assert d.url
    algo, expected = parse_checksum(d.checksum)
    changes: list[str] = []
    owned = _owned(conn, uid)
    mine = [i for i in owned if _from_source(i, d.url, d.checksum)]
    # a crash mid-upload leaves an owned image from the current source that never became active
    for img in mine:
        if img.status in UNFINISHED:
            _delete(conn, img.id, "unfinished upload")
            changes.append(f"deleted unfinished upload {img.id} ({img.status}) of {display_url(d.url)}")
    ready = sorted((i for i in mine if i.status == "active"), key=lambda i: (_created(i), i.id))
    created = False
    if ready:
        current = ready[-1]
    else:
        current = _upload(conn, d, uid, owner_project_id, opener, algo, expected)
        created = True
        changes.append(f"uploaded image {d.name} ({current.id}) from {display_url(d.url)}")
    if not created:   # keep the current image in shape
        if d.tag not in (current.tags or []):
            call(f"tagging image {current.id}", conn.image.add_tag, current, d.tag)
            changes.append(f"re-added tag {d.tag!r} to image {current.id}")
        if current.name != d.name:
            call(f"renaming image {current.id}", conn.image.update_image, current.id, name=d.name)
            changes.append(f"renamed image {current.id} to {d.name!r}")
    res = ImageResult(image_id=current.id, owner_id=current.owner, created=created, changes=changes)
    others = _others(conn, d, current)
    # our own older uploads that lost the tag are superseded too (e.g. when the tag changed)
    seen = {o.id for o in others}
    others += [i for i in owned if i.id != current.id and i.id not in seen and i.status == "active"
               and not _from_source(i, d.url, d.checksum)]
    others.sort(key=_created)
    res.superseded = [o.id for o in others]
    res.warnings = _newer_warnings([o for o in others if not owned_by(o, uid)], current, d)
    if d.prune_superseded:
        for o in others:
            if owned_by(o, uid):
                _delete(conn, o.id, "superseded image")
                res.pruned.append(o.id)
                changes.append(f"deleted superseded image {o.name} ({o.id})")
    return res


def _upload(conn: Any, d: ImageDesired, uid: str, owner_project_id: str, opener: Opener,
            algo: str | None, expected: str | None) -> Any:
    from openstack.image.v2 import image as _image
    assert d.url
    shown = display_url(d.url)
    try:
        source = opener(d.url)
    except DownloadError as exc:
        if exc.transient:
            raise TransientError("ImageDownloadFailed", str(exc)) from None
        raise StepError("ImageDownloadFailed", f"{exc}; check amphora.image.url") from None
    except StepError:
        raise
    except OSError as exc:
        raise StepError("ImageDownloadFailed", f"cannot download {shown}: {type(exc).__name__}") from None
    try:
        attrs = {
            "name": d.name, "disk_format": d.disk_format, "container_format": CONTAINER_FORMAT,
            "visibility": "private", "owner": owner_project_id, "tags": [d.tag, *owner_tags(uid)],
            PROP_SOURCE_URL: shown, PROP_SOURCE_CHECKSUM: d.checksum or "",
        }
        img = call(f"creating image {d.name}",
                   lambda: _image.Image.new(connection=conn, **attrs).create(conn.image))
        reader = HashingReader(source, algo, expected=expected)
        try:
            _put_data(conn, img, reader, source.length)
        except BaseException as exc:
            # the partial image is useless; a failed delete is repaired by the next run
            try:
                conn.image.delete_image(img.id, ignore_missing=True)
            except Exception:  # noqa: BLE001
                pass
            if isinstance(exc, ChecksumMismatch) or isinstance(reader.error, ChecksumMismatch):
                raise _mismatch(shown, algo, reader.hexdigest(), expected) from None
            if isinstance(exc, DownloadError) or isinstance(reader.error, DownloadError):
                err = exc if isinstance(exc, DownloadError) else reader.error
                raise TransientError("ImageDownloadFailed", str(err)) from None
            if isinstance(exc, StepError):
                raise
            if isinstance(exc, Exception):
                raise _classify(exc, f"uploading image {d.name}") from None
            raise
    finally:
        try:
            source.close()
        except Exception:  # noqa: BLE001
            pass
    if expected is not None and reader.hexdigest() != expected:   # belt and braces: read() checks first
        _delete(conn, img.id, "image with a wrong checksum")
        raise _mismatch(shown, algo, reader.hexdigest(), expected)
    img = call(f"reading image {img.id}", conn.image.get_image, img.id)
    if img.status != "active" or (img.size is not None and img.size != reader.bytes):
        _delete(conn, img.id, "incomplete upload")
        raise TransientError("ImageUploadIncomplete",
                             f"image {img.id} is {img.status} with {img.size} bytes after sending {reader.bytes}; "
                             "it was deleted and will be uploaded again")
    return img


def _mismatch(shown: str, algo: str | None, got: str | None, expected: str | None) -> StepError:
    return StepError("ImageChecksumMismatch",
                     f"the data downloaded from {shown} has {algo} {got}, not {expected} "
                     "(amphora.image.checksum); the upload was abandoned and the image deleted")


def _classify(exc: Exception, what: str) -> StepError:
    from .session import classify
    return classify(exc, what)


def _put_data(conn: Any, img: Any, reader: HashingReader, length: int | None) -> None:
    from openstack import exceptions as sdk
    headers = {"Content-Type": "application/octet-stream", "Accept": ""}
    if length is not None:
        headers["X-OpenStack-Image-Size"] = str(length)
    resp = conn.image.put(f"/images/{img.id}/file", data=reader, headers=headers)
    if reader.error is not None:
        raise reader.error
    sdk.raise_from_response(resp)


def delete_owned_images(conn: Any, uid: str) -> list[str]:
    """Delete every image carrying this uid's owner tag (adopted images never carry it).
    Idempotent; returns the IDs deleted."""
    out = []
    for img in _owned(conn, uid):
        _delete(conn, img.id, "image")
        out.append(img.id)
    return out
