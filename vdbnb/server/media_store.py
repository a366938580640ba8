"""Where media bytes live: one interface, two engines.

- :class:`FileMediaStore` (the default): files under the data dir, each written with fsync before it counts;
- :class:`S3MediaStore` (``VDBNB_MEDIA_URL=s3://bucket/prefix?endpoint=…&region=…``, credentials from
  ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``): objects in a bucket, so that every replica and worker
  reads what any of them wrote. An S3 PUT answers 200 only once the object is stored: that is the ack.

Keys are relative paths (``media/<session>/<stream>/<seq>.frag``, ``exports/<session>/<video>.mp4``,
``clips/<hash>.mp4``). Readers that need a file (the muxer writes one) use :meth:`MediaStore.scratch`, a
bounded folder of local copies; players get the bytes by :meth:`MediaStore.response` (a file with HTTP Range
support, or a redirect to a presigned URL: S3 answers Range requests itself).
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from ..private_fs import open_private, private_dir, tighten

SCRATCH_MAX_BYTES = 2 * 1024 ** 3  # local copies kept on an S3-backed process (least recently used go first)
SCRATCH_IN_USE_S = 600.0           # a copy used this recently is kept even above the bound


class MediaError(OSError):
    """The media store could not store or read an object now (``code``: DISK_FULL or STORAGE_ERROR)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class MediaStore:
    kind = "?"
    location = ""
    # a remote store whose PUT is a network wait: ingest starts the PUT before the database has said the
    # fragment is new (overlapping the two), so fragment keys are per attempt (a hash of the bytes and a nonce):
    # a write never replaces a stored fragment, and an attempt that ends without its row removes its own object
    early_writes = False

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` durably under ``key`` (returns only once it is stored)."""
        raise NotImplementedError

    def put_file(self, key: str, path: Path) -> None:
        """Move the file ``path`` into the store under ``key`` (exports and clips written by the muxer)."""
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def size(self, key: str) -> int | None:
        """The stored size of ``key``, or None when it is absent."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (a folder, ending in ``/``); returns how many there were."""
        raise NotImplementedError

    def delete_older(self, prefix: str, age_s: float) -> int:
        """Delete the objects under ``prefix`` not written (files: nor used) in the last ``age_s`` seconds."""
        raise NotImplementedError

    def local_path(self, key: str) -> Path:
        """A local file with the bytes of ``key`` (the file itself, or a copy in the scratch folder)."""
        raise NotImplementedError

    def scratch(self, name: str) -> Path:
        """A local path to write a new file to before :meth:`put_file` (in the data dir or the scratch folder)."""
        raise NotImplementedError

    def response(self, key: str, media_type: str = "video/mp4"):
        """A Starlette response serving ``key`` to a player (Range requests included)."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind, "location": self.location}


class FileMediaStore(MediaStore):
    kind = "files"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.location = str(self.root)

    def path(self, key: str) -> Path:
        p = Path(key)
        return p if p.is_absolute() else self.root / key  # absolute: a row written by vdbnb <= 0.1

    def put(self, key: str, data: bytes) -> None:
        try:
            durable_write(self.path(key), data)
        except OSError as e:
            code = "DISK_FULL" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "STORAGE_ERROR"
            raise MediaError(code, f"could not store {key}: {e.strerror}; free disk space in {self.root}") from None

    def put_file(self, key: str, path: Path) -> None:
        dst = self.path(key)
        if Path(path).resolve() != dst.resolve():
            private_dir(dst.parent)
            os.replace(path, dst)
            tighten(dst)

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except OSError:
            return None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        p = self.path(prefix)
        if not p.is_dir():
            return 0
        n = sum(1 for x in p.rglob("*") if x.is_file())
        shutil.rmtree(p, ignore_errors=True)
        return n

    def delete_older(self, prefix: str, age_s: float) -> int:
        p, t, n = self.path(prefix), time.time() - age_s, 0
        for f in (p.rglob("*") if p.is_dir() else []):
            try:
                if f.is_file() and f.stat().st_mtime < t:
                    f.unlink()
                    n += 1
            except FileNotFoundError:
                pass
        return n

    def local_path(self, key: str) -> Path:
        return self.path(key)

    def scratch(self, name: str) -> Path:
        p = self.path(name)
        private_dir(p.parent)
        return p

    def response(self, key: str, media_type: str = "video/mp4"):
        from fastapi.responses import FileResponse
        return FileResponse(self.path(key), media_type=media_type)


class S3MediaStore(MediaStore):
    """Objects in an S3-compatible bucket (AWS, SeaweedFS, MinIO, Ceph …), addressed path-style."""

    kind = "s3"
    early_writes = True

    def __init__(self, url: str, scratch_dir: Path, scratch_max_bytes: int = SCRATCH_MAX_BYTES,
                 presign_ttl: int = 3600):
        u = urlparse(url)
        if u.scheme != "s3" or not u.netloc:
            raise ValueError(f"media URL {url!r}: expected s3://bucket/prefix?endpoint=http://host:port&region=…")
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        self.bucket = u.netloc
        self.prefix = u.path.strip("/")
        self.endpoint = q.get("endpoint") or None  # None: AWS itself (boto3 also reads AWS_ENDPOINT_URL)
        self.region = q.get("region") or "us-east-1"
        self.location = f"s3://{self.bucket}/{self.prefix}" + (f" at {self.endpoint}" if self.endpoint else "")
        self.presign_ttl = presign_ttl
        self.scratch_dir = Path(scratch_dir)
        self.scratch_max = scratch_max_bytes
        self._scratch_lock = threading.Lock()
        try:
            import boto3
            from botocore.config import Config
        except ImportError as e:
            raise ImportError("S3 media needs boto3: pip install 'vdbnb[scale]'") from e
        cfg = Config(s3={"addressing_style": "path"}, signature_version="s3v4", retries={"max_attempts": 4,
                     "mode": "standard"}, connect_timeout=5, read_timeout=30, max_pool_connections=32)
        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region, config=cfg)
        from botocore.exceptions import BotoCoreError, ClientError
        self._errors = (BotoCoreError, ClientError)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def check(self) -> None:
        """Fail early, with what to do, when the bucket cannot be reached or written."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._errors as e:
            raise MediaError("STORAGE_ERROR", f"S3 bucket {self.bucket!r} at {self.endpoint or 'AWS'} is not "
                             f"reachable with these credentials ({e}); check VDBNB_MEDIA_URL and "
                             "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY") from None

    def put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                   ContentMD5=_md5_b64(data))
        except self._errors as e:
            raise MediaError("STORAGE_ERROR", f"could not store {key} in s3://{self.bucket}: {e}") from None

    def put_file(self, key: str, path: Path) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key))
        except self._errors as e:
            raise MediaError("STORAGE_ERROR", f"could not upload {key} to s3://{self.bucket}: {e}") from None
        finally:
            Path(path).unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self._errors as e:
            raise MediaError("STORAGE_ERROR", f"could not read {key} from s3://{self.bucket}: {e}") from None

    def size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except self._errors:
            return None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors:
            pass

    def _objects(self, prefix: str):
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
        for page in pages:
            yield from page.get("Contents", [])

    def _delete_keys(self, keys: list[str]) -> int:
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]],
                                                                   "Quiet": True})
        return len(keys)

    def delete_prefix(self, prefix: str) -> int:
        try:
            return self._delete_keys([o["Key"] for o in self._objects(prefix)])
        except self._errors as e:
            raise MediaError("STORAGE_ERROR", f"could not delete {prefix} in s3://{self.bucket}: {e}") from None

    def delete_older(self, prefix: str, age_s: float) -> int:
        t = time.time() - age_s
        try:
            return self._delete_keys([o["Key"] for o in self._objects(prefix) if o["LastModified"].timestamp() < t])
        except self._errors as e:
            raise MediaError("STORAGE_ERROR", f"could not delete under {prefix} in s3://{self.bucket}: {e}") from None

    def scratch(self, name: str) -> Path:
        p = self.scratch_dir / name
        private_dir(p.parent)
        return p

    def local_path(self, key: str) -> Path:
        p = self.scratch_dir / "cache" / hashlib.sha256(key.encode()).hexdigest()[:32]
        if p.exists():
            os.utime(p)
            return p
        private_dir(p.parent)
        tmp = p.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.client.download_file(self.bucket, self._key(key), str(tmp))
        except self._errors as e:
            tmp.unlink(missing_ok=True)
            raise MediaError("STORAGE_ERROR", f"could not read {key} from s3://{self.bucket}: {e}") from None
        os.replace(tmp, p)
        self._trim()
        return p

    def _trim(self) -> None:
        """Keep the scratch copies under the bound: least recently used go first (never one used in the last
        SCRATCH_IN_USE_S: an export reading them)."""
        with self._scratch_lock:
            files = []
            for f in (self.scratch_dir / "cache").glob("*"):
                try:
                    st = f.stat()
                except OSError:
                    continue
                files.append((st.st_mtime, st.st_size, f))
            total = sum(s for _, s, _ in files)
            young = time.time() - SCRATCH_IN_USE_S
            for mtime, s, f in sorted(files):
                if total <= self.scratch_max or mtime > young:
                    break
                f.unlink(missing_ok=True)
                total -= s

    def presigned_url(self, key: str, media_type: str = "video/mp4") -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key), "ResponseContentType": media_type},
            ExpiresIn=self.presign_ttl)

    def response(self, key: str, media_type: str = "video/mp4"):
        from fastapi.responses import RedirectResponse
        return RedirectResponse(self.presigned_url(key, media_type), status_code=307)


def open_media_store(media_url: str | None, data_dir: Path, scratch_max_bytes: int = SCRATCH_MAX_BYTES) -> MediaStore:
    """The media store named by ``media_url`` (``s3://…``), or files in the data dir when it is empty."""
    if not media_url or media_url.startswith("file"):
        root = Path(media_url[len("file://"):]) if media_url and media_url.startswith("file://") else Path(data_dir)
        return FileMediaStore(root)
    if media_url.startswith("s3://"):
        return S3MediaStore(media_url, Path(data_dir) / "scratch", scratch_max_bytes)
    raise ValueError(f"unsupported media URL {media_url.split(':', 1)[0]}://…: use s3://bucket/prefix?endpoint=…, "
                     "or leave VDBNB_MEDIA_URL unset for files in the data dir")


def durable_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temp file, fsync, rename, fsync of the folder)."""
    private_dir(path.parent)
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    fd = open_private(tmp)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(str(path.parent), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _md5_b64(data: bytes) -> str:
    import base64
    return base64.b64encode(hashlib.md5(data).digest()).decode()
