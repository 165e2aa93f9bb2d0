# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""qcow2 headers read as untrusted bytes: what an image names (backing file, its format, a data file)
and what its first bytes say it is. Pure: the caller reads the bytes (``_image_chain``).

A guest can write any bytes at the start of a disk the domain declares raw, a qcow2 header
included; so nothing here opens anything, and every field is bounded before it is used.
Layout: docs/interop/qcow2.txt in QEMU's source.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass

QCOW2_MAGIC = b'QFI\xfb'
HEADER_READ = 4096              # enough for the fixed header and the usual extensions
MAX_BACKING_NAME = 1023         # QEMU refuses longer backing file names

_EXT_END = 0
_EXT_BACKING_FORMAT = 0xE2792ACA
_EXT_DATA_FILE = 0x44415441
_INCOMPAT_DIRTY = 1 << 0
_INCOMPAT_CORRUPT = 1 << 1
_INCOMPAT_DATA_FILE = 1 << 2
_INCOMPAT_EXTENDED_L2 = 1 << 4
_INCOMPAT_KNOWN = (1 << 5) - 1         # bits QEMU 5.2 to 9.x define; an image with others is not opened
_COMPAT_LAZY_REFCOUNTS = 1 << 0

# First bytes of formats qcow2_create does not read, so that a file in one of them is never taken
# for a raw disk (and converted as raw bytes) by mistake.
OTHER_FORMAT_MAGICS = (
    (b'QED\x00', 'qed'), (b'KDMV', 'vmdk'), (b'# Disk DescriptorFile', 'vmdk'), (b'COWD', 'vmdk'),
    (b'conectix', 'vpc'), (b'vhdxfile', 'vhdx'), (b'LUKS\xba\xbe', 'luks'), (b'WithoutFreeSpace', 'parallels'),
    (b'WithouFreSpacExt', 'parallels'), (b'OOOM', 'qcow (version 1)'),
)
_VDI_SIGNATURE = b'\x7f\x10\xda\xbe'

# A name with ':' before its first '/' is a protocol to QEMU (nbd:, http:, json:, ...), not a file.
_PROTOCOL_RE = re.compile(r'^[^/]*:')


class HeaderError(ValueError):
    """The bytes are not a usable qcow2 header; the message says why (without the bytes)."""


@dataclass(frozen=True)
class Qcow2Header:
    version: int
    virtual_size: int
    cluster_size: int
    backing_offset: int
    backing_size: int
    incompatible: int
    compatible: int
    encrypted: bool
    backing_format: str | None = None
    data_file: str | None = None

    @property
    def has_backing(self):
        return self.backing_offset != 0 and self.backing_size != 0

    @property
    def compat(self):
        return '0.10' if self.version == 2 else '1.1'

    @property
    def corrupt(self):
        return bool(self.incompatible & _INCOMPAT_CORRUPT)

    @property
    def external_data_file(self):
        return bool(self.incompatible & _INCOMPAT_DATA_FILE) or self.data_file is not None

    @property
    def extended_l2(self):
        return bool(self.incompatible & _INCOMPAT_EXTENDED_L2)

    @property
    def unknown_features(self):
        return bool(self.incompatible & ~_INCOMPAT_KNOWN)

    @property
    def lazy_refcounts(self):
        return bool(self.compatible & _COMPAT_LAZY_REFCOUNTS)

    def backing_span(self):
        """(offset, size) of the backing file name in the file."""
        return self.backing_offset, self.backing_size


def is_qcow2(head):
    return head[:4] == QCOW2_MAGIC


def other_format(head):
    """The name of a non-qcow2 image format these first bytes announce, or None (raw or unknown)."""
    for magic, name in OTHER_FORMAT_MAGICS:
        if head.startswith(magic):
            return name
    if len(head) >= 68 and head[64:68] == _VDI_SIGNATURE:
        return 'vdi'
    return None


def parse_header(head):
    """A Qcow2Header from the first bytes of a file (at least 72, ``HEADER_READ`` preferred)."""
    if not is_qcow2(head):
        raise HeaderError('no qcow2 magic')
    if len(head) < 72:
        raise HeaderError('the qcow2 header is truncated')
    version, backing_offset, backing_size, cluster_bits, size, crypt = struct.unpack('>IQIIQI', head[4:36])
    if version not in (2, 3):
        raise HeaderError('qcow2 version %d is not one QEMU writes' % version)
    if not 9 <= cluster_bits <= 21:
        raise HeaderError('cluster size 2^%d is out of range' % cluster_bits)
    cluster_size = 1 << cluster_bits
    if backing_offset and backing_size:
        if backing_size > MAX_BACKING_NAME:
            raise HeaderError('the backing file name is longer than %d bytes' % MAX_BACKING_NAME)
        if backing_offset + backing_size > cluster_size:
            raise HeaderError('the backing file name lies outside the first cluster')
    incompatible = compatible = 0
    header_length = 72
    if version == 3:
        if len(head) < 104:
            raise HeaderError('the qcow2 version 3 header is truncated')
        incompatible, compatible = struct.unpack('>QQ', head[72:88])
        header_length = struct.unpack('>I', head[100:104])[0]
        if header_length < 104 or header_length % 8 or header_length > cluster_size:
            raise HeaderError('the header length %d is invalid' % header_length)
    backing_format, data_file = _extensions(head, header_length)
    return Qcow2Header(version=version, virtual_size=size, cluster_size=cluster_size,
                       backing_offset=backing_offset if backing_size else 0, backing_size=backing_size,
                       incompatible=incompatible, compatible=compatible, encrypted=crypt != 0,
                       backing_format=backing_format, data_file=data_file)


def _extensions(head, offset):
    """(backing format, external data file name) from the header extensions that ``head`` holds."""
    backing_format = data_file = None
    for _count in range(64):                      # QEMU writes a handful; a loop of garbage stops here
        if offset + 8 > len(head):
            break                                 # beyond what was read: treated as the end
        kind, length = struct.unpack('>II', head[offset:offset + 8])
        if kind == _EXT_END:
            break
        data = head[offset + 8:offset + 8 + length]
        if len(data) < length:
            break
        if kind == _EXT_BACKING_FORMAT:
            backing_format = _text(data)
        elif kind == _EXT_DATA_FILE:
            data_file = _text(data)
        offset += 8 + ((length + 7) & ~7)
    return backing_format, data_file


def _text(data):
    return data.rstrip(b'\x00').decode('utf-8', errors='surrogateescape')


def decode_name(raw):
    """A backing file name as the filesystem would spell it (undecodable bytes kept, see os.fsdecode)."""
    return raw.split(b'\x00', 1)[0].decode('utf-8', errors='surrogateescape')


def is_protocol(name):
    """True when QEMU would read ``name`` as a protocol or a JSON description, not as a file name."""
    return name.startswith('json:') or bool(_PROTOCOL_RE.match(name))


# libvirt's network storage protocols (virStorageNetProtocol): a backing name that is a URL or a colon
# string of one of them is read over the network, not from a local file.
NETWORK_PROTOCOLS = frozenset(('nbd', 'rbd', 'sheepdog', 'gluster', 'iscsi', 'http', 'https', 'ftp', 'ftps',
                               'tftp', 'ssh', 'vxhs', 'nfs'))
# The drivers of a JSON backing name that libvirt reads as a local path (``filename``), and whether it
# is a block device (storage_source_backingstore.c, jsonParsers[], libvirt 6.0 to 11).
_LOCAL_JSON_DRIVERS = {'file': False, 'host_device': True, 'host_cdrom': True}
_REMOTE_JSON_DRIVERS = NETWORK_PROTOCOLS | {'nvme'}


@dataclass(frozen=True)
class BackingName:
    """How libvirt reads a protocol-like backing name (``read_backing_name``): ``kind`` is ``local``
    (``path``: the file it names), ``remote`` (over the network: nothing on this host) or ``unknown``
    (``why``: libvirt would refuse it, or it names something these checks do not read)."""

    kind: str
    path: str | None = None
    why: str = ''


def _deflatten(value):
    """A JSON object with dotted keys (``{"file.filename": ...}``, as QEMU and libvirt accept) nested."""
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        parts = key.split('.')
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ValueError('key %s conflicts with another' % key)
        if parts[-1] in target:
            raise ValueError('key %s appears twice' % key)
        target[parts[-1]] = _deflatten(item)
    return out


def _json_node(node, allow_format):
    driver = node.get('driver')
    if not isinstance(driver, str):
        return BackingName('unknown', why='a JSON backing name without a driver')
    if driver in _LOCAL_JSON_DRIVERS:
        filename = node.get('filename')
        if not isinstance(filename, str) or not filename:
            return BackingName('unknown', why='a JSON backing name with driver %s and no filename' % driver)
        return BackingName('local', path=filename)
    if driver == 'raw' and allow_format:
        inner = node.get('file')
        if not isinstance(inner, dict):
            return BackingName('unknown', why='a JSON backing name with driver raw and no file')
        return _json_node(inner, False)
    if driver in _REMOTE_JSON_DRIVERS:
        return BackingName('remote')
    return BackingName('unknown', why='a JSON backing name with driver %s, which libvirt does not read' % driver)


def read_backing_name(name):
    """How libvirt reads the backing name ``name`` a header records (``is_protocol(name)``): a
    ``json:`` description as libvirt parses it (dotted keys nested; a ``file`` wrapper without a
    driver unwrapped; ``file``, ``host_device`` and ``host_cdrom`` name a local path, also inside one
    ``raw`` driver; network drivers are remote); a URL or colon string of a network protocol is remote;
    anything else is unknown (a file may lie behind it that these checks cannot see)."""
    if name.startswith('json:'):
        try:
            top = _deflatten(json.loads(name[len('json:'):]))
        except (ValueError, RecursionError) as err:
            return BackingName('unknown', why='a JSON backing name that cannot be read (%s)' % err)
        if not isinstance(top, dict):
            return BackingName('unknown', why='a JSON backing name that is not an object')
        node = top
        if 'driver' not in top and isinstance(top.get('file'), dict):
            node = top['file']
        return _json_node(node, True)
    scheme = name.split(':', 1)[0].split('+', 1)[0].lower()
    if scheme in NETWORK_PROTOCOLS:
        return BackingName('remote')
    return BackingName('unknown', why='a backing name with the prefix %s:, which is neither a file nor a network '
                                      'protocol libvirt reads' % scheme)
