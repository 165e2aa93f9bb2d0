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

What it reads can be hostile: a guest writes every byte of a raw disk, a qcow2 header included. So
the format is the one the domain declares (``<driver type>``), never the one the bytes suggest; only a
declared qcow2 is parsed and its backing file followed (with the format its header records); files are
opened without following a link at the resolved name and without blocking, and only regular files and
block devices are read (a FIFO is named, not waited on); and every probe is bounded in time (a hung
NFS server or FUSE daemon gives "could not tell" with the reason, not a hung run).
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import queue
import struct
import threading
import weakref

from ._support import StorageFacts

# Filesystems a domain can migrate on without copying storage (libvirt's virFileIsSharedFS list).
SHARED_FILESYSTEMS = frozenset((
    'nfs', 'nfs4', 'cifs', 'smb3', 'smbfs', 'ceph', 'fuse.glusterfs', 'glusterfs', 'gfs2', 'ocfs2',
    'gpfs', 'lustre', 'beegfs', 'fuse.quobyte', 'virtiofs', 'fuse.virtiofs', '9p', 'afs',
))
QCOW2_MAGIC = b'QFI\xfb'
_BLOCK = 4096
_MAX_CHAIN = 64
_HEADER_BYTES = 65536           # the qcow2 header and its extensions live in the first cluster (<= 64 KiB read)
_MAX_BACKING_NAME = 1023        # qcow2 spec: a longer backing file name is invalid
_BACKING_FORMAT_EXT = 0xE2792ACA
# The format of a disk whose XML declares none. libvirt's QEMU driver stores type='raw' for such a
# disk when it is defined (checked with libvirt 9.0), so QEMU opens it as raw; xml_path files and
# volumes may still lack it. Raw is also the only safe guess: probing the bytes would let a guest choose.
DEFAULT_FORMAT = 'raw'
# Formats whose header the probe parses to follow a backing chain; others are probed as one file.
CHAIN_FORMATS = frozenset(('qcow2',))
PROBE_TIMEOUT = 10


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


def _open_nofollow(path):
    """An fd of ``path`` (already resolved: a link there now is a race, refused), never blocking on a
    FIFO or a device; (fd, stat) or raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    try:
        return fd, os.fstat(fd)
    except OSError:
        os.close(fd)
        raise


def _kind_problem(path, st):
    if stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return None
    for test, name in ((stat.S_ISFIFO, 'a FIFO'), (stat.S_ISSOCK, 'a socket'), (stat.S_ISCHR, 'a character device'),
                       (stat.S_ISDIR, 'a directory')):
        if test(st.st_mode):
            return '%s is %s, not a disk image; not read' % (path, name)
    return '%s is not a regular file or block device; not read' % path


def qcow2_header_facts(header):
    """(backing file name or None, backing format or None) from the first bytes of a qcow2 image.

    Only what QEMU itself would use: the name at the offset the header gives (at most 1023 bytes),
    and the format from the backing-format header extension. Raises ValueError when the header names
    a backing file it does not hold."""
    if len(header) < 72 or header[:4] != QCOW2_MAGIC:
        return None, None
    version = struct.unpack('>I', header[4:8])[0]
    offset, size = struct.unpack('>QI', header[8:20])
    if not offset or not size:
        return None, None
    if size > _MAX_BACKING_NAME or offset + size > len(header):
        raise ValueError('the qcow2 header names a backing file of %d bytes at offset %d, which is not valid'
                         % (size, offset))
    name = bytes(header[offset:offset + size]).decode('utf-8', errors='surrogateescape')
    backing_format = None
    ext = struct.unpack('>I', header[100:104])[0] if version >= 3 and len(header) >= 104 else 72
    while ext + 8 <= offset:
        kind, length = struct.unpack('>II', header[ext:ext + 8])
        if kind == 0:
            break
        if kind == _BACKING_FORMAT_EXT and ext + 8 + length <= offset:
            backing_format = bytes(header[ext + 8:ext + 8 + length]).decode('ascii', errors='replace')
        ext += 8 + ((length + 7) & ~7)
    return name, backing_format


def _qcow2_header(fd, first_block):
    """The bytes ``qcow2_header_facts`` needs: the block the O_DIRECT probe read when the header, its
    extensions and the backing file name fit in it (as qemu-img writes them), else the first 64 KiB."""
    if first_block is not None and len(first_block) >= _BLOCK:
        try:
            qcow2_header_facts(first_block)
            return first_block
        except ValueError:
            pass
    return os.pread(fd, _HEADER_BYTES, 0)


def _is_network(name):
    return ':' in name.split('/')[0]


def probe_odirect(path):
    """(True, '') if an O_DIRECT open and an aligned read work; (False, why) if refused;
    (None, why) if the probe could not tell (permissions, missing file, not a file or device)."""
    try:
        fd, st = _open_nofollow(path)
    except OSError as err:
        return None, 'cannot open %s: %s' % (path, err.strerror)
    try:
        problem = _kind_problem(path, st)
        if problem:
            return None, problem
        ok, why, _header = _read_direct(fd, path)
        return ok, why
    finally:
        os.close(fd)


def probe_odirect_fd(fd, path):
    """``probe_odirect`` for a file the caller already opened and checked (``path`` names it in messages)."""
    problem = _kind_problem(path, os.fstat(fd))
    if problem:
        return None, problem
    ok, why, _header = _read_direct(fd, path)
    return ok, why


def _read_direct(fd, path):
    """Opens the file behind ``fd`` again with O_DIRECT (through /proc/self/fd: the same inode, not
    the name) and reads one aligned block: (ok, why, header bytes or None)."""
    flags = os.O_RDONLY | getattr(os, 'O_DIRECT', 0) | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0)
    try:
        direct = os.open('/proc/self/fd/%d' % fd, flags)
    except OSError as err:
        if err.errno == errno.EINVAL:
            return False, 'open with O_DIRECT refused (EINVAL)', None
        return None, 'cannot open %s: %s' % (path, err.strerror), None
    try:
        buf = mmap.mmap(-1, _BLOCK)      # page-aligned, as O_DIRECT needs
        try:
            got = os.preadv(direct, [buf], 0)
        except OSError as err:
            if err.errno == errno.EINVAL:
                return False, 'aligned O_DIRECT read refused (EINVAL)', None
            return None, 'cannot read %s: %s' % (path, err.strerror), None
        header = buf[:got]
        buf.close()
    finally:
        os.close(direct)
    return True, '', header


def bounded(func, timeout, *args):
    """(True, func(*args)) or (False, None) when it has not returned within ``timeout`` seconds.

    The call runs in a daemon thread: a read stuck on a dead NFS server cannot be interrupted, but
    the run goes on without it, and the kernel ends the thread when the module exits (NFS and FUSE
    waits are killable)."""
    box = []

    def call():
        try:
            box.append((True, func(*args)))
        except BaseException as err:  # pylint: disable=broad-except
            box.append((False, err))

    thread = threading.Thread(target=call, name='kvmio-probe', daemon=True)
    thread.start()
    thread.join(timeout)
    if not box:
        return False, None
    ok, value = box[0]
    if not ok:
        raise value
    return True, value


class _Worker:
    """A daemon thread that runs calls one at a time (a thread per probe would cost more than many
    probes do). When a call hangs, the worker is abandoned, told to stop once it returns, and replaced."""

    def __init__(self):
        self.calls = queue.SimpleQueue()
        threading.Thread(target=self._loop, name='kvmio-probe', daemon=True).start()

    def _loop(self):
        while True:
            func, args, box, done = self.calls.get()
            if func is None:
                return
            try:
                box.append((True, func(*args)))
            except BaseException as err:  # pylint: disable=broad-except
                box.append((False, err))
            done.set()
            del func, args, box, done   # holding the last call would keep its prober (and this thread) alive

    def call(self, timeout, func, *args):
        """Like ``bounded``."""
        box, done = [], threading.Event()
        self.calls.put((func, args, box, done))
        if not done.wait(timeout):
            return False, None
        ok, value = box[0]
        if not ok:
            raise value
        return True, value

    def stop(self):
        self.calls.put((None, None, None, None))


class StorageProber:
    """Probes disk sources once per module run (many domains share directories and bases)."""

    def __init__(self, mounts=None, timeout=PROBE_TIMEOUT):
        self.mounts = read_mounts() if mounts is None else mounts
        self.timeout = timeout
        self._cache = {}
        self._hung = set()         # mountpoints where a probe did not finish
        self._worker = None

    def all_facts(self):
        """{path: facts dict} of every source probed so far."""
        return {path: facts.as_dict() for (path, _fmt), facts in self._cache.items()}

    def facts(self, path, image_format):
        """StorageFacts of ``path`` opened as ``image_format``, the format its domain declares
        (``<driver type>``; None: DEFAULT_FORMAT)."""
        key = (path, image_format or DEFAULT_FORMAT)
        if key not in self._cache:
            self._cache[key] = self._bounded_probe(*key)
        return self._cache[key]

    def _bounded_probe(self, path, image_format):
        mountpoint, _fs = filesystem_of(os.path.abspath(path), self.mounts)
        if mountpoint in self._hung:
            return StorageFacts(path=path, kind='unreadable', image_format=image_format,
                                detail='not probed: an earlier probe on %s did not finish within %d s'
                                % (mountpoint, self.timeout))
        if self._worker is None:
            self._worker = _Worker()
            weakref.finalize(self, self._worker.stop)
        done, facts = self._worker.call(self.timeout, self._probe, path, image_format)
        if done:
            return facts
        self._worker.stop()        # it leaves once the stuck call returns, if ever
        self._worker = None
        self._hung.add(mountpoint)
        return StorageFacts(path=path, kind='unreadable', image_format=image_format,
                            detail='the probe of %s did not finish within %d s (a hung NFS server, FUSE daemon or '
                            'device?); could not tell' % (path, self.timeout))

    def _probe(self, path, image_format):
        real = os.path.realpath(path)
        try:
            fd, st = _open_nofollow(real)
        except FileNotFoundError:
            return StorageFacts(path=path, kind='missing', image_format=image_format,
                                detail='%s does not exist on this host' % path)
        except OSError as err:
            return StorageFacts(path=path, kind='unreadable', image_format=image_format,
                                detail='cannot open %s: %s' % (path, err.strerror))
        try:
            problem = _kind_problem(path, st)
            if problem:
                return StorageFacts(path=path, kind='unsupported', image_format=image_format, detail=problem)
            mountpoint, fstype = filesystem_of(real, self.mounts)
            if stat.S_ISBLK(st.st_mode):
                ok, why, _header = _read_direct(fd, real)
                return StorageFacts(path=path, kind='block', fstype='block device', mountpoint=None, odirect=ok,
                                    shared=False, image_format=image_format, chain=(real,), detail=why)
        finally:
            os.close(fd)
        chain, odirect, detail = self._walk_chain(real, image_format)
        return StorageFacts(path=path, kind='file', fstype=fstype, mountpoint=mountpoint, odirect=odirect,
                            shared=fstype in SHARED_FILESYSTEMS, image_format=image_format, chain=tuple(chain),
                            detail=detail)

    def _walk_chain(self, real, image_format):
        """(every file of the chain, odirect, detail). Each file is opened as the format its user
        declares: the disk's from the domain XML, a backing file's from the header that names it."""
        chain, odirect, detail = [], True, ''

        def unsure(why):
            return chain, (False if odirect is False else None), (detail if odirect is False else why)

        current, fmt = real, image_format
        while current:
            if len(chain) >= _MAX_CHAIN:
                return unsure('backing chain longer than %d files at %s' % (_MAX_CHAIN, current))
            if current in chain:
                return unsure('backing chain loops at %s' % current)
            try:
                fd, st = _open_nofollow(current)
            except FileNotFoundError:
                return unsure('backing file %s is missing' % current)
            except OSError as err:
                return unsure('cannot open %s: %s' % (current, err.strerror))
            try:
                problem = _kind_problem(current, st)
                if problem:
                    return unsure(problem)
                chain.append(current)
                ok, why, header = _read_direct(fd, current)
                if ok is not True and odirect is not False:
                    odirect, detail = ok, why
                    if ok is False:
                        _mp, chain_fs = filesystem_of(current, self.mounts)
                        detail = '%s on %s: %s' % (current, chain_fs, why)
                if fmt not in CHAIN_FORMATS:
                    break       # raw (or another format): its bytes are the guest's, never followed
                header = _qcow2_header(fd, header)
            except OSError as err:
                return unsure('cannot read %s: %s' % (current, err.strerror))
            finally:
                os.close(fd)
            if header[:4] != QCOW2_MAGIC:
                return unsure('%s is declared %s but has no %s header' % (current, fmt, fmt))
            try:
                name, backing_format = qcow2_header_facts(header)
            except ValueError as err:
                return unsure('%s: %s' % (current, err))
            if not name:
                break
            if _is_network(name):
                break       # a network backing file: not ours to probe
            backing = name if os.path.isabs(name) else os.path.join(os.path.dirname(current), name)
            # No recorded format: QEMU would probe the bytes; libvirt refuses such a chain unless the
            # file looks raw. Either way, it is opened here as raw and not followed further.
            current, fmt = os.path.realpath(backing), backing_format or DEFAULT_FORMAT
        return chain, odirect, detail
