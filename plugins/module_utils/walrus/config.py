# SPDX-License-Identifier: GPL-3.0-or-later
"""Settings, from one place: explicit values (command-line flags or module parameters),
then WALRUS_* environment variables, then the config file.

S3 connection settings are boto3's own (AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_CA_BUNDLE,
the credentials chain, AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE ...); the config file
may carry them too (aws_access_key_id = ...), below the environment in precedence.
Secrets are never taken from the command line; a config file holding one must not be
readable by group or others.

This module is on the archive_command fast path: standard library only, nothing heavy.
"""
import os
import stat

from .errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/walrus/walrus.conf"

# name: (type, default, help). The environment variable is WALRUS_<NAME upper-cased>,
# the config file key is the name itself. docs/configuration.md is generated from this table.
SETTINGS = {
    "repo": (str, None, "Repository URL: s3://bucket/prefix, file:///path or a local path."),
    "compression": (str, "lz4", "Compression for new objects: lz4, zstd or none."),
    "compression_level": (int, None, "Compression level (codec default when unset)."),
    "upload_concurrency": (int, 4, "Parallel uploads/downloads of one walrus process."),
    "max_read_rate": (float, None, "backup-push: most MB/s (10^6 bytes) read from the data directory, "
                                   "all parallel workers together (unset or 0: no limit)."),
    "max_upload_rate": (float, None, "backup-push: most MB/s sent to the repository for the backup's parts, "
                                     "all parallel uploads together (WAL archiving is never throttled)."),
    "max_download_rate": (float, None, "backup-fetch, backup-verify, drill: most MB/s received from the repository "
                                       "for backup parts, all parallel downloads together (wal-fetch is never throttled)."),
    "primary_password": (str, None, "backup-fetch --standby: the replication password walrus writes into the "
                                    "--primary-passfile (mode 0600) named in primary_conninfo. **Secret**: "
                                    "environment or a mode 0600 config file only."),
    "lookahead": (int, 16, "wal-push: how many .ready WAL files the background pusher stores at once, ahead of PostgreSQL's calls (0 turns look-ahead off)."),
    "prefetch": (int, 8, "wal-fetch: how many following segments to fetch ahead in the background (0 turns prefetch off)."),
    "fetch_retry_seconds": (int, 60, "wal-fetch: how long to keep retrying when the repository cannot be read (a missing file is never retried)."),
    "state_dir": (str, None, "wal-push look-ahead records (default: <pg_wal>/walrus/push/<repository tag>)."),
    "prefetch_dir": (str, None, "wal-fetch prefetched segments (default: <pg_wal>/walrus/prefetch/<repository tag>)."),
    "s3_addressing_style": (str, None, "S3 addressing: path, virtual or auto (default: path with a custom endpoint, else auto)."),
    "s3_storage_class": (str, None, "S3 storage class for new objects (e.g. STANDARD_IA)."),
    "s3_sse": (str, None, "S3 server-side encryption: AES256 or aws:kms."),
    "s3_sse_kms_key_id": (str, None, "KMS key id for s3_sse = aws:kms."),
    "s3_max_attempts": (int, 6, "S3 attempts per request (retries with backoff on 5xx, throttling, resets)."),
    "s3_conditional_writes": (bool, True, "Use If-None-Match on uploads so nothing is ever overwritten (turn off for servers without it)."),
    "s3_connect_timeout": (int, 10, "S3 connect timeout, seconds."),
    "s3_read_timeout": (int, 60, "S3 read timeout, seconds."),
    "lock_wait": (int, 0, "backup-push and delete --confirm: seconds to wait while another run holds the repository lock (0: refuse at once, exit 8)."),
    "encryption_key": (str, None, "Client-side encryption (AES-256-GCM) of every object written: the key, 64 hex digits "
                                  "(`openssl rand -hex 32`) or base64 of 32 bytes. A secret: environment or config file "
                                  "only, never a flag. Unset: new objects are not encrypted."),
    "encryption_key_file": (str, None, "Instead of encryption_key: a file holding the key (mode 0600; walrus refuses one readable by others)."),
    "encryption_old_keys": (str, None, "Older keys, still used to decrypt objects they encrypted (key rotation); separated by commas or spaces. A secret."),
    "encryption_old_key_files": (str, None, "Files holding older keys (mode 0600), separated by commas or spaces."),
}

# AWS settings that may also come from the config file; the environment variable wins.
AWS_SETTINGS = {
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "aws_session_token": ("AWS_SESSION_TOKEN",),
    "aws_profile": ("AWS_PROFILE",),
    "aws_region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "aws_endpoint_url": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "aws_ca_bundle": ("AWS_CA_BUNDLE",),
}
SECRET_KEYS = frozenset(("aws_secret_access_key", "aws_session_token", "primary_password", "encryption_key",
                         "encryption_old_keys"))


class Settings(object):
    """Resolved settings; attributes named as in SETTINGS and AWS_SETTINGS."""

    def __init__(self, values, sources):
        self.__dict__.update(values)
        self._sources = sources

    def source(self, name):
        """Where a setting came from (for messages): 'flag', 'env WALRUS_X', 'config PATH' or 'default'."""
        return self._sources.get(name, "default")

    def redacted(self):
        """The settings as a dict with secrets masked, for `walrus check` and logs."""
        out = {}
        for name in list(SETTINGS) + list(AWS_SETTINGS):
            value = getattr(self, name)
            out[name] = "********" if (name in SECRET_KEYS and value) else value
        return out


def _convert(name, kind, raw, where):
    if raw is None or kind is str:
        return raw
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        low = str(raw).strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError("%s: %s=%r is not a boolean (use true or false)" % (where, name, raw))
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError("%s: %s=%r is not %s" % (where, name, raw, "an integer" if kind is int else "a number"))
    if not abs(value) < float("inf"):  # NaN compares false with everything
        raise ConfigError("%s: %s=%r is not a finite number" % (where, name, raw))
    if value < 0:
        raise ConfigError("%s: %s=%r must not be negative" % (where, name, raw))
    return value


def _strip_comment(value):
    """An unquoted value ends at a # that follows white space. (No `re`: this module is on
    the archive_command fast path and `re` alone costs more than the rest of it.)"""
    for i in range(1, len(value)):
        if value[i] == "#" and value[i - 1] in " \t":
            return value[:i].rstrip()
    return value


def read_config_file(path):
    """Parse a flat `key = value` file: # starts a comment (on its own line, or after white
    space in an unquoted value); values may be quoted. Returns a dict."""
    try:
        st = os.stat(path)
        with open(path, "r") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError("cannot read config file %s: %s" % (path, exc.strerror or exc))
    known = set(SETTINGS) | set(AWS_SETTINGS)
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#") or line.startswith(";"):
            continue
        if "=" not in line:
            raise ConfigError("%s line %d: expected 'key = value', got %r" % (path, number, line))
        key, value = (part.strip() for part in line.split("=", 1))
        key = key.lower()
        if key not in known:
            raise ConfigError("%s line %d: unknown setting %r (known: %s)" % (path, number, key, ", ".join(sorted(known))))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        else:
            value = _strip_comment(value)
        values[key] = value
    if SECRET_KEYS.intersection(values) and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            "config file %s holds a secret but its mode is %04o: run chmod 600 %s"
            % (path, stat.S_IMODE(st.st_mode), path))
    return values


def load(explicit=None, environ=None):
    """Resolve settings. `explicit` holds flag/module values (None means unset)."""
    explicit = dict((k, v) for k, v in (explicit or {}).items() if v is not None)
    environ = os.environ if environ is None else environ
    config_path = explicit.pop("config", None) or environ.get("WALRUS_CONFIG")
    file_values = {}
    if config_path:
        file_values = read_config_file(config_path)
    elif os.path.exists(DEFAULT_CONFIG_PATH):
        config_path = DEFAULT_CONFIG_PATH
        file_values = read_config_file(config_path)

    values, sources = {}, {}
    for name, (kind, default, _help) in SETTINGS.items():
        env_name = "WALRUS_" + name.upper()
        if name in explicit:
            raw, where = explicit[name], "flag"
        elif environ.get(env_name, "") != "":
            raw, where = environ[env_name], "env " + env_name
        elif name in file_values:
            raw, where = file_values[name], "config " + config_path
        else:
            values[name] = default
            continue
        values[name] = _convert(name, kind, raw, where)
        sources[name] = where
    for name, env_names in AWS_SETTINGS.items():
        values[name] = None
        if explicit.get(name):
            values[name], sources[name] = explicit[name], "flag"
            continue
        for env_name in env_names:
            if environ.get(env_name):
                values[name], sources[name] = environ[env_name], "env " + env_name
                break
        else:
            if file_values.get(name):
                values[name], sources[name] = file_values[name], "config " + config_path
    if values["compression"] not in ("lz4", "zstd", "none"):
        raise ConfigError("%s: compression=%r: use lz4, zstd or none"
                          % (sources.get("compression", "default"), values["compression"]))
    if values["upload_concurrency"] < 1:
        raise ConfigError("upload_concurrency must be at least 1")
    return Settings(values, sources)
