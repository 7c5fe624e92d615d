# SPDX-License-Identifier: GPL-3.0-or-later
"""WAL file names and WAL segment headers, with no I/O.

Names PostgreSQL archives: segments (24 hex digits: timeline, log, segment), partial
segments (`.partial`, the last segment of a timeline left behind by a promotion), backup
history files (`<segment>.<offset>.backup`) and timeline history files (`<tli>.history`).
"""
import re
import struct

from .errors import UsageError

_PATTERNS = (
    ("segment", re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")),
    ("partial", re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.partial$")),
    ("backup", re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.[0-9A-F]{8}\.backup$")),
    ("history", re.compile(r"^([0-9A-F]{8})\.history$")),
)

# XLOG_PAGE_MAGIC of each PostgreSQL major version (src/include/access/xlog_internal.h).
PAGE_MAGIC_TO_MAJOR = {0xD106: 13, 0xD10D: 14, 0xD110: 15, 0xD113: 16, 0xD116: 17, 0xD118: 18}
XLP_LONG_HEADER = 0x0002
# XLogLongPageHeaderData: magic, info, tli, pageaddr, rem_len, (padding), sysid, seg_size, blcksz
LONG_HEADER = struct.Struct("<HHIQI4xQII")


class WalName(object):
    __slots__ = ("name", "kind", "timeline", "log", "seg")

    def __init__(self, name, kind, timeline, log=None, seg=None):
        self.name, self.kind, self.timeline, self.log, self.seg = name, kind, timeline, log, seg

    @property
    def has_header(self):
        """Segments and partial segments start with a long page header."""
        return self.kind in ("segment", "partial")

    def segno(self, segment_size):
        return self.log * (0x100000000 // segment_size) + self.seg

    def object_key(self):
        return "wal/%08X/%s" % (self.timeline, self.name)


def parse(name):
    for kind, pattern in _PATTERNS:
        match = pattern.match(name)
        if match:
            groups = [int(g, 16) for g in match.groups()]
            if groups[0] == 0:
                raise UsageError("malformed WAL file name %r: timeline 0 does not exist" % name)
            return WalName(name, kind, *groups)
    raise UsageError(
        "malformed WAL file name %r: expected a segment (24 hex digits), <segment>.partial, "
        "<segment>.<offset>.backup or <timeline>.history" % (name,))


def segment_name(timeline, segno, segment_size):
    per_log = 0x100000000 // segment_size
    return "%08X%08X%08X" % (timeline, segno // per_log, segno % per_log)


def read_long_header(data, walname):
    """Parse and check the long page header at the start of a segment. Returns
    (system_identifier, segment_size, page_magic)."""
    if len(data) < LONG_HEADER.size:
        raise UsageError("%s is not a WAL segment: only %d bytes" % (walname.name, len(data)))
    magic, info, _tli, pageaddr, _rem, sysid, seg_size, blcksz = LONG_HEADER.unpack_from(data)
    if not info & XLP_LONG_HEADER or seg_size == 0 or seg_size & (seg_size - 1) or not 1 << 20 <= seg_size <= 1 << 30:
        raise UsageError("%s is not a WAL segment: no valid long page header" % walname.name)
    if len(data) != seg_size:
        raise UsageError("%s is %d bytes but its header says segments are %d bytes: refusing an incomplete segment"
                         % (walname.name, len(data), seg_size))
    if pageaddr != walname.segno(seg_size) * seg_size:
        raise UsageError("%s holds WAL of another position (page address %X/%X): the file does not match its name"
                         % (walname.name, pageaddr >> 32, pageaddr & 0xFFFFFFFF))
    return sysid, seg_size, magic
