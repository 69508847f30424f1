"""openstack/image.py against the real loopback Glance (tests/cloud), checked with plain openstacksdk.

The images are served by an HTTP server on 127.0.0.1 (free port) that this module starts and stops.
"""
from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
import tracemalloc
import uuid

import pytest
from cloud.plugin import tiny_qcow2
from oscount import WriteCounter

from octavia_operator.builders.cloud import ImageDesired
from octavia_operator.backends.openstack import image as im
from octavia_operator.backends.openstack.common import MANAGED_TAG, owner_tag, owner_tags
from octavia_operator.errors import StepError, TransientError

cloud = pytest.mark.openstack
MiB = 1 << 20


# ------------------------------------------------------------------------------------------
# an HTTP server on 127.0.0.1 serving bytes from a dict (path -> bytes), 404 elsewhere,
# 500 on /broken, and counting the GETs per path

class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        srv.gets[self.path] = srv.gets.get(self.path, 0) + 1
        if self.path == "/broken":
            self.send_error(500)
            return
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        view = memoryview(data)
        for i in range(0, len(data), 64 * 1024):
            self.wfile.write(view[i:i + 64 * 1024])

    def log_message(self, *args) -> None:
        pass


class FileServer:
    def __init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.files = {}
        self.httpd.gets = {}
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, data: bytes) -> str:
        self.httpd.files[path] = data
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def gets(self, path: str) -> int:
        return self.httpd.gets.get(path, 0)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def service_project_id(os_cloud) -> str:
    return os_cloud.identity.find_project("service", ignore_missing=False).id


@pytest.fixture
def uid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def images(os_cloud, uid):
    """Track images made by hand; delete them and everything carrying the test uid's owner tag."""
    made: list[str] = []
    yield made
    ids = set(made) | {i.id for i in os_cloud.image.images(tag=owner_tag(uid))}
    for i in ids:
        os_cloud.image.delete_image(i, ignore_missing=True)


def desired(tag: str, url: str | None = None, *, checksum: str | None = None, image_id: str | None = None,
            name: str = "amphora-test", disk_format: str = "qcow2", prune: bool = False) -> ImageDesired:
    return ImageDesired(tag=tag, name=name, url=url, checksum=checksum, image_id=image_id,
                        disk_format=disk_format, prune_superseded=prune)


def hand_image(conn, made: list, name: str, tags: list[str], data: bytes | None = None, **props):
    """An image made the seed's way (openstack image create ... --tag ...)."""
    img = conn.image.create_image(name, data=data if data is not None else tiny_qcow2(), disk_format="qcow2",
                                  container_format="bare", tags=tags, allow_duplicates=True, wait=True, **props)
    made.append(img.id)
    return conn.image.get_image(img.id)


def gone(conn, image_id: str) -> bool:
    return conn.image.find_image(image_id, ignore_missing=True) is None


def owned_ids(conn, uid: str) -> list[str]:
    return [i.id for i in conn.image.images(tag=owner_tag(uid))]


# ------------------------------------------------------------------------------------------
# pure parts

def test_display_url_drops_credentials():
    assert im.display_url("https://u:p@example.org:8443/a/b.qcow2?x=1") == "https://example.org:8443/a/b.qcow2?x=1"
    assert im.display_url("http://example.org/a.qcow2") == "http://example.org/a.qcow2"


def test_parse_checksum():
    assert im.parse_checksum("SHA256:AB") == ("sha256", "ab")
    assert im.parse_checksum(None) == (None, None)
    with pytest.raises(StepError) as e:
        im.parse_checksum("crc32:1234")
    assert e.value.reason == "InvalidChecksum"


def test_hashing_reader_bounds_pieces_and_hashes():
    data = bytes(range(256)) * 4096   # 1 MiB

    class Src:
        length = len(data)
        pos = 0

        def read(self, n):
            out = data[self.pos:self.pos + n]
            self.pos += len(out)
            return out

        def close(self):
            pass

    r = im.HashingReader(Src(), "sha256", chunk=1000)
    assert r.len == len(data)
    got = b"".join(iter(lambda: r.read(-1), b""))
    assert got == data and r.max_piece == 1000 and r.bytes == len(data)
    assert r.hexdigest() == hashlib.sha256(data).hexdigest()


class _Bytes:
    def __init__(self, data: bytes, length: int | None):
        self.data, self.length, self.pos = data, length, 0

    def read(self, n):
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def close(self):
        pass


@pytest.mark.parametrize("length", [True, False])
def test_hashing_reader_withholds_the_last_piece_on_a_wrong_digest(length):
    data = b"x" * 5000
    r = im.HashingReader(_Bytes(data, len(data) if length else None), "sha256", chunk=1000,
                         expected=hashlib.sha256(b"other").hexdigest())
    handed = []
    with pytest.raises(im.ChecksumMismatch):
        while chunk := r.read(1000):
            handed.append(chunk)
    # with a known length the last 1000 bytes are never handed out; else the end is never reported
    assert sum(map(len, handed)) == (4000 if length else 5000)
    ok = im.HashingReader(_Bytes(data, len(data) if length else None), "sha256", chunk=1000,
                          expected=hashlib.sha256(data).hexdigest())
    assert b"".join(iter(lambda: ok.read(1000), b"")) == data


def test_hashing_reader_short_source_is_transient():
    r = im.HashingReader(_Bytes(b"x" * 10, 20), None)
    assert r.read(100) == b"x" * 10
    with pytest.raises(im.DownloadError) as e:
        r.read(100)
    assert e.value.transient


# ------------------------------------------------------------------------------------------
# upload from a URL

@cloud
def test_upload_from_url_private_tagged_owned_then_converged(os_cloud, server, images, uid, unique_name,
                                                             service_project_id):
    data = tiny_qcow2()
    url = server.add("/amp.qcow2", data)
    d = desired(unique_name, url, checksum="sha256:" + hashlib.sha256(data).hexdigest(), name=unique_name)
    res = im.ensure_image(os_cloud, d, uid, service_project_id)
    assert res.created and not res.adopted and res.image_id
    assert res.owner_id == service_project_id
    img = os_cloud.image.get_image(res.image_id)
    assert img.status == "active"
    assert img.visibility == "private"
    assert img.owner == service_project_id
    assert img.name == unique_name
    assert (img.disk_format, img.container_format) == ("qcow2", "bare")
    assert set(img.tags) == {unique_name, MANAGED_TAG, owner_tag(uid)}
    assert img.size == len(data)
    assert img.properties[im.PROP_SOURCE_URL] == url
    assert img.properties[im.PROP_SOURCE_CHECKSUM] == d.checksum
    assert img.checksum == hashlib.md5(data).hexdigest()   # Glance's own digest of what it stored
    assert server.gets("/amp.qcow2") == 1
    # second run: found by its source properties, nothing downloaded, nothing written
    with WriteCounter(os_cloud) as w:
        again = im.ensure_image(os_cloud, d, uid, service_project_id)
    assert w.writes == []
    assert server.gets("/amp.qcow2") == 1
    assert (again.image_id, again.created, again.changes, again.superseded) == (res.image_id, False, [], [])
    assert owned_ids(os_cloud, uid) == [res.image_id]


@cloud
def test_url_credentials_are_not_stored(os_cloud, server, images, uid, unique_name, service_project_id):
    server.add("/c.qcow2", tiny_qcow2())
    url = server.url("/c.qcow2").replace("http://", "http://someone:pw-" + unique_name + "@")
    res = im.ensure_image(os_cloud, desired(unique_name, url), uid, service_project_id)
    img = os_cloud.image.get_image(res.image_id)
    assert img.properties[im.PROP_SOURCE_URL] == server.url("/c.qcow2")
    assert "pw-" + unique_name not in " ".join(res.changes)


@cloud
def test_checksum_mismatch_is_never_activated_and_deleted(os_cloud, server, images, uid, unique_name,
                                                          service_project_id, monkeypatch):
    url = server.add("/bad.qcow2", tiny_qcow2())
    d = desired(unique_name, url, checksum="sha256:" + "0" * 64)
    # what Glance holds when the operator deletes it: the bad data must never have been active
    statuses: list[str] = []
    real_delete = os_cloud.image.delete_image

    def delete_image(image, *args, **kwargs):
        statuses.append(os_cloud.image.get_image(image).status)
        return real_delete(image, *args, **kwargs)

    monkeypatch.setattr(os_cloud.image, "delete_image", delete_image)
    with pytest.raises(StepError) as e:
        im.ensure_image(os_cloud, d, uid, service_project_id)
    assert e.value.reason == "ImageChecksumMismatch"
    assert not isinstance(e.value, TransientError)
    assert statuses and "active" not in statuses
    monkeypatch.undo()
    assert owned_ids(os_cloud, uid) == []
    # the right checksum, in another algorithm, works
    d2 = desired(unique_name, url, checksum="sha512:" + hashlib.sha512(tiny_qcow2()).hexdigest())
    assert im.ensure_image(os_cloud, d2, uid, service_project_id).created


@cloud
def test_download_failures(os_cloud, server, images, uid, unique_name, service_project_id):
    with pytest.raises(StepError) as e:
        im.ensure_image(os_cloud, desired(unique_name, server.url("/missing.qcow2")), uid, service_project_id)
    assert e.value.reason == "ImageDownloadFailed" and not isinstance(e.value, TransientError)
    with pytest.raises(TransientError) as e:
        im.ensure_image(os_cloud, desired(unique_name, server.url("/broken")), uid, service_project_id)
    assert e.value.reason == "ImageDownloadFailed"
    with socket.socket() as s:        # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StepError) as e:
        im.ensure_image(os_cloud, desired(unique_name, f"http://127.0.0.1:{port}/x.qcow2"), uid, service_project_id)
    assert e.value.reason == "ImageDownloadFailed"
    assert owned_ids(os_cloud, uid) == []


@cloud
def test_download_breaking_mid_way_is_transient_and_leaves_nothing(os_cloud, images, uid, unique_name,
                                                                   service_project_id):
    class Breaks:
        length = 4 * im.CHUNK

        def __init__(self):
            self.sent = 0

        def read(self, n):
            if self.sent >= 2 * im.CHUNK:
                raise im.DownloadError("connection reset mid-way", transient=True)
            self.sent += n
            return b"\0" * n

        def close(self):
            pass

    with pytest.raises(TransientError) as e:
        im.ensure_image(os_cloud, desired(unique_name, "http://example.invalid/a.raw", disk_format="raw"), uid,
                        service_project_id, opener=lambda url: Breaks())
    assert e.value.reason == "ImageDownloadFailed"
    assert owned_ids(os_cloud, uid) == []


@cloud
def test_upload_is_streamed_in_bounded_chunks(os_cloud, server, images, uid, unique_name, service_project_id):
    size = 12 * MiB
    data = hashlib.shake_256(unique_name.encode()).digest(size)   # incompressible, made before tracing
    url = server.add("/big.raw", data)

    class Recording:
        """Wraps the default (requests) source; records every piece handed to the upload."""

        def __init__(self, src):
            self.src, self.length, self.pieces = src, src.length, []

        def read(self, n):
            out = self.src.read(n)
            self.pieces.append(len(out))
            return out

        def close(self):
            self.src.close()

    opened: list[Recording] = []

    def opener(u):
        opened.append(Recording(im.http_opener()(u)))
        return opened[-1]

    tracemalloc.start()
    try:
        res = im.ensure_image(os_cloud, desired(unique_name, url, disk_format="raw",
                                                checksum="sha256:" + hashlib.sha256(data).hexdigest()),
                              uid, service_project_id, opener=opener)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    pieces = opened[0].pieces
    assert sum(pieces) == size
    assert max(pieces) <= MiB and max(pieces) <= im.CHUNK
    assert len([p for p in pieces if p]) >= size // im.CHUNK
    assert peak < size // 3, f"uploading {size} bytes allocated {peak} bytes at peak: not streamed"
    img = os_cloud.image.get_image(res.image_id)
    assert img.status == "active" and img.size == size
    assert img.checksum == hashlib.md5(data).hexdigest()


@cloud
def test_source_of_unknown_length_is_sent_chunked(os_cloud, images, uid, unique_name, service_project_id):
    data = tiny_qcow2()

    class NoLength:
        length = None
        pos = 0

        def read(self, n):
            out = data[self.pos:self.pos + min(n, 10000)]
            self.pos += len(out)
            return out

        def close(self):
            pass

    res = im.ensure_image(os_cloud, desired(unique_name, "http://example.invalid/a.qcow2"), uid,
                          service_project_id, opener=lambda url: NoLength())
    img = os_cloud.image.get_image(res.image_id)
    assert img.status == "active" and img.size == len(data) and img.checksum == hashlib.md5(data).hexdigest()


@cloud
def test_crash_mid_upload_is_detected_and_redone(os_cloud, server, images, uid, unique_name, service_project_id):
    url = server.add("/amp.qcow2", tiny_qcow2())
    # what a crash between "image created" and "data sent" leaves: a queued image with our markers
    from openstack.image.v2 import image as _image
    stuck = _image.Image.new(connection=os_cloud, name=unique_name, disk_format="qcow2", container_format="bare",
                             visibility="private", owner=service_project_id, tags=[unique_name, *owner_tags(uid)],
                             **{im.PROP_SOURCE_URL: url, im.PROP_SOURCE_CHECKSUM: ""}).create(os_cloud.image)
    images.append(stuck.id)
    assert os_cloud.image.get_image(stuck.id).status == "queued"
    res = im.ensure_image(os_cloud, desired(unique_name, url), uid, service_project_id)
    assert res.created and res.image_id != stuck.id
    assert any(stuck.id in c for c in res.changes)
    assert gone(os_cloud, stuck.id)
    assert owned_ids(os_cloud, uid) == [res.image_id]
    assert os_cloud.image.get_image(res.image_id).status == "active"


@cloud
def test_new_url_supersedes_then_prune(os_cloud, server, images, uid, unique_name, service_project_id):
    u1 = server.add("/v1.qcow2", tiny_qcow2())
    u2 = server.add("/v2.qcow2", tiny_qcow2(2 * MiB))
    first = im.ensure_image(os_cloud, desired(unique_name, u1), uid, service_project_id)
    foreign = hand_image(os_cloud, images, unique_name + "-hand", [unique_name])   # someone else's, same tag
    second = im.ensure_image(os_cloud, desired(unique_name, u2), uid, service_project_id)
    assert second.created and second.image_id != first.image_id
    assert set(second.superseded) == {first.image_id, foreign.id}
    assert second.pruned == []
    assert not gone(os_cloud, first.image_id)            # reported, not deleted
    # still converged without prune
    with WriteCounter(os_cloud) as w:
        assert im.ensure_image(os_cloud, desired(unique_name, u2), uid, service_project_id).image_id == second.image_id
    assert w.writes == []
    pruned = im.ensure_image(os_cloud, desired(unique_name, u2, prune=True), uid, service_project_id)
    assert pruned.image_id == second.image_id and not pruned.created
    assert pruned.pruned == [first.image_id]
    assert gone(os_cloud, first.image_id)
    assert not gone(os_cloud, foreign.id)               # not ours: never deleted
    assert os_cloud.image.get_image(second.image_id).status == "active"


@cloud
def test_drift_on_the_current_image_is_repaired(os_cloud, server, images, uid, unique_name, service_project_id):
    url = server.add("/amp.qcow2", tiny_qcow2())
    d = desired(unique_name, url, name=unique_name)
    res = im.ensure_image(os_cloud, d, uid, service_project_id)
    os_cloud.image.remove_tag(res.image_id, unique_name)
    os_cloud.image.update_image(res.image_id, name=unique_name + "-renamed")
    again = im.ensure_image(os_cloud, d, uid, service_project_id)
    assert again.image_id == res.image_id and not again.created and len(again.changes) == 2
    img = os_cloud.image.get_image(res.image_id)
    assert unique_name in img.tags and img.name == unique_name


@cloud
def test_delete_owned_images(os_cloud, server, images, uid, unique_name, service_project_id):
    url = server.add("/amp.qcow2", tiny_qcow2())
    res = im.ensure_image(os_cloud, desired(unique_name, url), uid, service_project_id)
    adopted = hand_image(os_cloud, images, unique_name + "-hand", [unique_name])
    assert im.delete_owned_images(os_cloud, uid) == [res.image_id]
    assert gone(os_cloud, res.image_id) and not gone(os_cloud, adopted.id)
    assert im.delete_owned_images(os_cloud, uid) == []


# ------------------------------------------------------------------------------------------
# adoption

@cloud
def test_adopt_newest_by_tag_without_writing(os_cloud, images, uid, unique_name, service_project_id):
    older = hand_image(os_cloud, images, unique_name + "-old", [unique_name])
    time.sleep(1.1)   # Glance stores created_at with one-second resolution
    newer = hand_image(os_cloud, images, unique_name + "-new", [unique_name])
    with WriteCounter(os_cloud) as w:
        res = im.ensure_image(os_cloud, desired(unique_name), uid, service_project_id)
    assert w.writes == []
    assert res.adopted and not res.created
    assert res.image_id == newer.id and res.superseded == [older.id]
    assert res.owner_id == newer.owner == os_cloud.current_project_id
    assert im.delete_owned_images(os_cloud, uid) == []
    assert not gone(os_cloud, newer.id) and not gone(os_cloud, older.id)


@cloud
def test_adopt_by_tag_two_newest_is_ambiguous_none_is_not_found(os_cloud, images, uid, unique_name,
                                                                 service_project_id):
    with pytest.raises(StepError) as e:
        im.ensure_image(os_cloud, desired(unique_name), uid, service_project_id)
    assert e.value.reason == "ImageNotFound" and "amphora.image.url" in e.value.message
    a = hand_image(os_cloud, images, unique_name + "-a", [unique_name])
    b = hand_image(os_cloud, images, unique_name + "-b", [unique_name])
    if a.created_at == b.created_at:
        with pytest.raises(StepError) as e:
            im.ensure_image(os_cloud, desired(unique_name), uid, service_project_id)
        assert e.value.reason == "Ambiguous" and a.id in e.value.message and b.id in e.value.message
    else:   # created in different seconds: the newest wins
        assert im.ensure_image(os_cloud, desired(unique_name), uid, service_project_id).image_id == b.id


@cloud
def test_adopt_by_id_adds_the_tag_and_never_deletes(os_cloud, images, uid, unique_name, service_project_id):
    hand = hand_image(os_cloud, images, unique_name + "-byid", [])
    d = desired(unique_name, image_id=hand.id)
    res = im.ensure_image(os_cloud, d, uid, service_project_id)
    assert res.adopted and res.image_id == hand.id and res.owner_id == hand.owner
    assert len(res.changes) == 1 and unique_name in res.changes[0]
    assert unique_name in os_cloud.image.get_image(hand.id).tags
    with WriteCounter(os_cloud) as w:
        assert im.ensure_image(os_cloud, d, uid, service_project_id).changes == []
    assert w.writes == []
    assert im.delete_owned_images(os_cloud, uid) == []
    assert not gone(os_cloud, hand.id)
    with pytest.raises(StepError) as e:
        im.ensure_image(os_cloud, desired(unique_name, image_id=str(uuid.uuid4())), uid, service_project_id)
    assert e.value.reason == "ImageNotFound"


@cloud
def test_image_of_another_deployment_is_refused(os_cloud, images, uid, unique_name, service_project_id):
    other = str(uuid.uuid4())
    theirs = hand_image(os_cloud, images, unique_name + "-theirs", owner_tags(other))
    with pytest.raises(StepError) as e:
        im.ensure_image(os_cloud, desired(unique_name, image_id=theirs.id), uid, service_project_id)
    assert e.value.reason == "OwnedByAnotherDeployment" and other in e.value.message
    assert unique_name not in os_cloud.image.get_image(theirs.id).tags   # refused before any write
