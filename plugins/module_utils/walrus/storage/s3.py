# SPDX-License-Identifier: GPL-3.0-or-later
"""S3-compatible repository through boto3.

Connection settings are boto3's own (endpoint, region, CA bundle, credentials chain);
config.py lets the config file supply them too. Retries: botocore's standard mode retries
5xx, throttling and connection errors with exponential backoff; a body that breaks while
being read is fetched again here.
"""
import time

from ..errors import NotFound, ObjectExists, StorageError
from .base import Storage, check_key

try:
    import boto3
    import botocore.config
    import botocore.exceptions
    HAS_BOTO3 = True
except ImportError:  # reported when an s3:// repository is opened
    HAS_BOTO3 = False

AUTH_CODES = frozenset(("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
                        "ExpiredToken", "TokenRefreshRequired", "403"))
STREAM_RETRIES = 4
MULTIPART_SIZE = 32 << 20
STREAM_ERRORS = ((botocore.exceptions.ResponseStreamingError, botocore.exceptions.ReadTimeoutError,
                  botocore.exceptions.IncompleteReadError, ConnectionError) if HAS_BOTO3 else ())


class S3Storage(Storage):
    def __init__(self, bucket, prefix, settings):
        if not HAS_BOTO3:
            raise StorageError("an s3:// repository needs the Python package boto3 (pip install boto3)")
        self.bucket = bucket
        self.prefix = prefix
        self.url = "s3://%s/%s" % (bucket, prefix) if prefix else "s3://%s" % bucket
        self.endpoint = settings.aws_endpoint_url
        self.settings = settings
        addressing = settings.s3_addressing_style or ("path" if self.endpoint else "auto")
        if addressing not in ("path", "virtual", "auto"):
            raise StorageError("s3_addressing_style=%r: use path, virtual or auto" % addressing)
        s3_options = {"addressing_style": addressing}
        if (self.endpoint or "").lower().startswith("https://"):
            # TLS already protects the body in transit: skip SigV4's SHA-256 of every body
            # (about 6 ms of CPU per compressed WAL segment). Over plain http it stays signed.
            s3_options["payload_signing_enabled"] = False
        config = botocore.config.Config(
            s3=s3_options,
            retries={"max_attempts": max(1, settings.s3_max_attempts), "mode": "standard"},
            connect_timeout=settings.s3_connect_timeout,
            read_timeout=settings.s3_read_timeout,
            max_pool_connections=max(10, 2 * settings.upload_concurrency),
            # Our objects carry their own SHA-256; skip botocore's extra pass over every body.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            session = boto3.session.Session(
                aws_access_key_id=settings.aws_access_key_id,
                aws_secret_access_key=settings.aws_secret_access_key,
                aws_session_token=settings.aws_session_token,
                region_name=settings.aws_region,
                profile_name=settings.aws_profile,
            )
            self.client = session.client("s3", endpoint_url=self.endpoint, verify=settings.aws_ca_bundle, config=config)
        except botocore.exceptions.BotoCoreError as exc:
            raise StorageError("cannot set up the S3 client: %s" % exc)
        self._extra = {}
        if settings.s3_storage_class:
            self._extra["StorageClass"] = settings.s3_storage_class
        if settings.s3_sse:
            self._extra["ServerSideEncryption"] = settings.s3_sse
        if settings.s3_sse_kms_key_id:
            self._extra["SSEKMSKeyId"] = settings.s3_sse_kms_key_id

    def _key(self, key):
        check_key(key)
        return "%s/%s" % (self.prefix, key) if self.prefix else key

    def _where(self):
        return "%s (endpoint %s)" % (self.url, self.endpoint or "AWS default")

    def _error(self, exc, op, key):
        """Translate a boto error into a walrus error with a message a DBA can act on."""
        what = self.describe(key)
        if isinstance(exc, botocore.exceptions.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "NotFound") or (code == "404" and op != "bucket"):
                return NotFound("%s not found" % what)
            if code in ("NoSuchBucket",) or (code == "404" and op == "bucket"):
                return StorageError("bucket %r does not exist at %s" % (self.bucket, self._where()))
            if code in ("PreconditionFailed", "412") or status == 412:
                return ObjectExists("object %s already exists" % what)
            if code in AUTH_CODES or status == 403:
                return StorageError("access to %s denied (%s): check the S3 credentials and their permissions"
                                    % (self._where(), code or status))
            if code in ("NotImplemented", "501") and op == "put":
                return StorageError("S3 server at %s does not support conditional writes (If-None-Match); "
                                    "set s3_conditional_writes = false" % (self.endpoint or "AWS"))
            return StorageError("S3 %s of %s failed: %s %s" % (op, what, code or status, err.get("Message", "")))
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return StorageError("no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                                "a profile, or aws_access_key_id/aws_secret_access_key in the walrus config file")
        if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError)):
            return StorageError("cannot reach the S3 endpoint for %s: %s" % (self._where(), exc))
        if isinstance(exc, botocore.exceptions.SSLError):
            return StorageError("TLS error talking to %s: %s (set AWS_CA_BUNDLE or aws_ca_bundle for a private CA)"
                                % (self._where(), exc))
        return StorageError("S3 %s of %s failed: %s" % (op, what, exc))

    def _call(self, op, key, fn, **kwargs):
        try:
            return fn(**kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, op, key)

    def put(self, key, data, overwrite=False):
        params = dict(Bucket=self.bucket, Key=self._key(key), Body=data, **self._extra)
        if not overwrite:
            if self.settings.s3_conditional_writes:
                params["IfNoneMatch"] = "*"
            elif self.exists(key):
                raise ObjectExists("object %s already exists" % self.describe(key))
        for attempt in range(3):
            try:
                self.client.put_object(**params)
                return
            except botocore.exceptions.ClientError as exc:
                # 409: a concurrent conditional write of the same key is in flight; try again.
                if exc.response.get("Error", {}).get("Code") == "ConditionalRequestConflict" and attempt < 2:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                error = self._error(exc, "put", key)
                retried = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
                if isinstance(error, ObjectExists) and retried and self._holds(key, data):
                    return  # botocore retried a put whose reply was lost: the object is ours, as we wrote it
                raise error
            except botocore.exceptions.BotoCoreError as exc:
                raise self._error(exc, "put", key)

    def _holds(self, key, data):
        """Whether the stored object is byte-identical to `data`."""
        try:
            return self.get(key) == bytes(data)
        except (NotFound, StorageError):
            return False

    def put_stream(self, key, chunks, overwrite=False):
        """Multipart upload in parts of at least MULTIPART_SIZE (a single put for small objects);
        the object appears only when the upload completes, so a failed one leaves nothing.
        A part is the join of the chunks that filled it (S3 needs no exact part size), so memory
        holds at most about two parts per upload: the chunks and their join, no slicing copies."""
        pending, pending_bytes, parts, upload_id, size = [], 0, [], None, 0
        full_key = self._key(key)

        def upload_part(body):
            number = len(parts) + 1
            etag = self._call("put", key, self.client.upload_part, Bucket=self.bucket, Key=full_key,
                              UploadId=upload_id, PartNumber=number, Body=body)["ETag"]
            parts.append({"ETag": etag, "PartNumber": number})

        try:
            for chunk in chunks:
                pending.append(bytes(chunk))
                pending_bytes += len(chunk)
                size += len(chunk)
                if pending_bytes >= MULTIPART_SIZE:
                    if upload_id is None:
                        if not overwrite and not self.settings.s3_conditional_writes and self.exists(key):
                            raise ObjectExists("object %s already exists" % self.describe(key))
                        upload_id = self._call("put", key, self.client.create_multipart_upload, Bucket=self.bucket,
                                               Key=full_key, **self._extra)["UploadId"]
                    body = b"".join(pending)
                    pending, pending_bytes = [], 0
                    upload_part(body)
                    del body
            if upload_id is None:
                self.put(key, b"".join(pending), overwrite)
                return size
            if pending:
                upload_part(b"".join(pending))
            params = dict(Bucket=self.bucket, Key=full_key, UploadId=upload_id, MultipartUpload={"Parts": parts})
            if not overwrite and self.settings.s3_conditional_writes:
                params["IfNoneMatch"] = "*"
            self._call("put", key, self.client.complete_multipart_upload, **params)
            upload_id = None
            return size
        finally:
            if upload_id is not None:
                try:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=full_key, UploadId=upload_id)
                except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                    pass  # an orphaned upload costs storage until a lifecycle rule removes it, nothing else

    def get_stream(self, key, chunk_size=1 << 20):
        response = self._call("get", key, self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        return self._chunks(key, response, chunk_size)

    def _chunks(self, key, response, chunk_size):
        """Yield the body; if the connection breaks, resume with a ranged GET where it stopped."""
        offset, attempts = 0, 0
        while True:
            try:
                for chunk in response["Body"].iter_chunks(chunk_size):
                    offset += len(chunk)
                    yield chunk
                return
            except STREAM_ERRORS as exc:
                attempts += 1
                if attempts >= STREAM_RETRIES:
                    raise StorageError("S3 get of %s failed while reading the body: %s" % (self.describe(key), exc))
                time.sleep(0.1 * 2 ** attempts)
                response = self._call("get", key, self.client.get_object, Bucket=self.bucket, Key=self._key(key),
                                      Range="bytes=%d-" % offset)

    def get(self, key):
        stream_errors = STREAM_ERRORS
        for attempt in range(STREAM_RETRIES):
            response = self._call("get", key, self.client.get_object, Bucket=self.bucket, Key=self._key(key))
            try:
                return response["Body"].read()
            except stream_errors as exc:
                if attempt == STREAM_RETRIES - 1:
                    raise StorageError("S3 get of %s failed while reading the body: %s" % (self.describe(key), exc))
                time.sleep(0.1 * 2 ** attempt)

    def exists(self, key):
        try:
            self._call("head", key, self.client.head_object, Bucket=self.bucket, Key=self._key(key))
            return True
        except NotFound:
            self._check_bucket()  # a missing bucket must not look like a missing object
            return False

    def list_info(self, prefix=""):
        full = self._key(prefix.rstrip("/")) + ("/" if prefix.endswith("/") else "") if prefix else (
            self.prefix + "/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", ()):
                    yield item["Key"][strip:], item["Size"], item["LastModified"].timestamp()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, "bucket", prefix)

    def delete(self, keys):
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start:start + 1000]]
            result = self._call("delete", "", self.client.delete_objects, Bucket=self.bucket,
                                Delete={"Objects": batch, "Quiet": True})
            if result.get("Errors"):
                first = result["Errors"][0]
                raise StorageError("S3 delete of %s failed: %s %s" % (first.get("Key"), first.get("Code"), first.get("Message")))

    def _check_bucket(self):
        self._call("bucket", "", self.client.head_bucket, Bucket=self.bucket)

    def check(self):
        self._check_bucket()
        # Listing proves the credentials may read the prefix, not just see the bucket.
        self._call("bucket", "", self.client.list_objects_v2, Bucket=self.bucket,
                   Prefix=self.prefix + "/" if self.prefix else "", MaxKeys=1)
        return {"backend": "s3", "bucket": self.bucket, "prefix": self.prefix,
                "endpoint": self.endpoint or "AWS default", "region": self.client.meta.region_name}
