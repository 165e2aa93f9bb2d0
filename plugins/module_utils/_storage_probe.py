# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Storage probes: does O_DIRECT work for an image and its backing chain, on which filesystem.

QEMU opens an image with O_DIRECT for cache=none/directsync and io=native; filesystems such as
ZFS before 2.3, ramfs and many FUSE filesystems refuse that open, and the domain then does not
start. The probe does what QEMU does: open each file of the chain with O_DIRECT and read one
aligned block. It reads qcow2 headers itself (no qemu-img process per disk) to follow backing files.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import struct

from ._support import StorageFacts

# Filesystems a domain can migrate on without copying storage (libvirt's virFileIsSharedFS list).
SHARED_FILESYSTEMS = frozenset((
    'nfs', 'nfs4', 'cifs', 'smb3', 'smbfs', 'ceph', 'fuse.glusterfs', 'glusterfs', 'gfs2', 'ocfs2',
    'gpfs', 'lustre', 'beegfs', 'fuse.quobyte', 'virtiofs', 'fuse.virtiofs', '9p', 'afs',
))
QCOW2_MAGIC = b'QFI\xfb'
_BLOCK = 4096
_MAX_CHAIN = 64


def _unescape_mount_field(field):
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == '\\' and len(field[i + 1:i + 4]) == 3 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return ''.join(out)


def read_mounts(mountinfo='/proc/self/mountinfo'):
    """[(mountpoint, fstype)], longest mountpoints first."""
    mounts = []
    try:
        with open(mountinfo, encoding='utf-8', errors='replace') as handle:
            for line in handle:
                left, _sep, right = line.partition(' - ')
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                mounts.append((_unescape_mount_field(fields[4]), right.split()[0]))
    except OSError:
        return []
    mounts.sort(key=lambda m: len(m[0]), reverse=True)
    return mounts


def filesystem_of(path, mounts):
    """(mountpoint, fstype) of the mount holding ``path`` (already resolved), or (None, None)."""
    for mountpoint, fstype in mounts:
        if path == mountpoint or path.startswith(mountpoint.rstrip('/') + '/') or mountpoint == '/':
            return mountpoint, fstype
    return None, None


def qcow2_backing_file(path, header):
    """The absolute backing file named in a qcow2 header, or None."""
    if len(header) < 20 or header[:4] != QCOW2_MAGIC:
        return None
    offset, size = struct.unpack('>QI', header[8:20])
    if not offset or not size or size > 4096:
        return None
    with open(path, 'rb') as handle:
        handle.seek(offset)
        name = handle.read(size).decode('utf-8', errors='surrogateescape')
    if name.startswith(('json:', 'nbd:', 'rbd:', 'gluster:', 'iscsi:', 'http:', 'https:')):
        return name
    return name if os.path.isabs(name) else os.path.join(os.path.dirname(path), name)


def probe_odirect(path):
    """(True, '') if an O_DIRECT open and an aligned read work; (False, why) if refused;
    (None, why) if the probe could not tell (permissions, missing file)."""
    ok, why, _header = _read_direct(path)
    return ok, why


def _read_direct(path):
    """``probe_odirect`` plus the first 512 bytes it read (the image header), or None."""
    flags = os.O_RDONLY | getattr(os, 'O_DIRECT', 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.EINVAL:
            return False, 'open with O_DIRECT refused (EINVAL)', None
        return None, 'cannot open %s: %s' % (path, err.strerror), None
    try:
        buf = mmap.mmap(-1, _BLOCK)      # page-aligned, as O_DIRECT needs
        try:
            got = os.preadv(fd, [buf], 0)
        except OSError as err:
            if err.errno == errno.EINVAL:
                return False, 'aligned O_DIRECT read refused (EINVAL)', None
            return None, 'cannot read %s: %s' % (path, err.strerror), None
        header = buf[:min(got, 512)]
        buf.close()
    finally:
        os.close(fd)
    return True, '', header


class StorageProber:
    """Probes disk sources once per module run (many domains share directories and bases)."""

    def __init__(self, mounts=None):
        self.mounts = read_mounts() if mounts is None else mounts
        self._cache = {}

    def all_facts(self):
        """{path: facts dict} of every source probed so far."""
        return {path: facts.as_dict() for path, facts in self._cache.items()}

    def facts(self, path):
        if path not in self._cache:
            self._cache[path] = self._probe(path)
        return self._cache[path]

    def _probe(self, path):
        real = os.path.realpath(path)
        try:
            st = os.stat(real)
        except FileNotFoundError:
            return StorageFacts(path=path, kind='missing', detail='%s does not exist on this host' % path)
        except OSError as err:
            return StorageFacts(path=path, kind='unreadable', detail='cannot stat %s: %s' % (path, err.strerror))
        mountpoint, fstype = filesystem_of(real, self.mounts)
        if stat.S_ISBLK(st.st_mode):
            ok, why = probe_odirect(real)
            return StorageFacts(path=path, kind='block', fstype='block device', mountpoint=None, odirect=ok,
                                shared=False, image_format=None, chain=(real,), detail=why)
        chain, image_format, detail, odirect = [], None, '', True

        def file_facts(odirect, detail):
            return StorageFacts(path=path, kind='file', fstype=fstype, mountpoint=mountpoint, odirect=odirect,
                                shared=fstype in SHARED_FILESYSTEMS, image_format=image_format,
                                chain=tuple(chain), detail=detail)

        current = real
        while current and len(chain) < _MAX_CHAIN:
            if current in chain:
                return file_facts(None, 'backing chain loops at %s' % current)
            if not os.path.exists(current):
                return file_facts(None, 'backing file %s is missing' % current)
            chain.append(current)
            ok, why, header = _read_direct(current)
            if ok is not True and odirect is not False:
                odirect, detail = ok, why
                if ok is False:
                    _mp, chain_fs = filesystem_of(current, self.mounts)
                    detail = '%s on %s: %s' % (current, chain_fs, why)
            try:
                if header is None:          # no O_DIRECT here: read the header the ordinary way
                    with open(current, 'rb') as handle:
                        header = handle.read(512)
                backing = qcow2_backing_file(current, header)
            except OSError as err:
                return file_facts(None, 'cannot read %s: %s' % (current, err.strerror))
            if image_format is None:
                image_format = 'qcow2' if header[:4] == QCOW2_MAGIC else 'raw'
            if backing and ':' in backing.split('/')[0]:
                break   # a network backing file: not ours to probe
            current = os.path.realpath(backing) if backing else None
        return file_facts(odirect, detail)
