# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Storage probes: does O_DIRECT work for an image and its backing chain, on which filesystem.

QEMU opens an image with O_DIRECT for cache=none/directsync and io=native; filesystems such as
ZFS before 2.3, ramfs and many FUSE filesystems refuse that open, and the domain then does not
start. The probe does what QEMU does: open each file of the chain with O_DIRECT and read one
aligned block. It walks backing chains itself (``_image_chain``, with ``_qcow2_header`` for the
headers: no qemu-img process per disk), the same walk qcow2_create uses to find an image's users.

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
import queue
import stat
import threading
import weakref

from ._errors import PlanError
from ._image_chain import MAX_CHAIN, kind_of, layer_from_fd, not_an_image, note_read, open_file, walk_chain, \
    watch_reads
from ._support import StorageFacts

# Filesystems a domain can migrate on without copying storage (libvirt's virFileIsSharedFS list).
SHARED_FILESYSTEMS = frozenset((
    'nfs', 'nfs4', 'cifs', 'smb3', 'smbfs', 'ceph', 'fuse.glusterfs', 'glusterfs', 'gfs2', 'ocfs2',
    'gpfs', 'lustre', 'beegfs', 'fuse.quobyte', 'virtiofs', 'fuse.virtiofs', '9p', 'afs',
))
_BLOCK = 4096
# The format of a disk whose XML declares none. libvirt's QEMU driver stores type='raw' for such a
# disk when it is defined (checked with libvirt 9.0), so QEMU opens it as raw; xml_path files and
# volumes may still lack it. Raw is also the only safe guess: probing the bytes would let a guest choose.
DEFAULT_FORMAT = 'raw'
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


def probe_odirect(path):
    """(True, '') if an O_DIRECT open and an aligned read work; (False, why) if refused;
    (None, why) if the probe could not tell (permissions, missing file, not a file or device)."""
    try:
        fd, _st = open_file(path, nofollow=True)
    except PlanError as err:
        return None, err.msg
    except OSError as err:
        return None, 'cannot open %s: %s' % (path, err.strerror)
    try:
        return probe_odirect_fd(fd, path)
    finally:
        os.close(fd)


def probe_odirect_fd(fd, path):
    """``probe_odirect`` for a file the caller already opened (``path`` names it in messages)."""
    kind = kind_of(os.fstat(fd).st_mode)
    if kind not in ('file', 'block'):
        return None, not_an_image(path, kind).msg
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


def _read_direct_path(path):
    """``_read_direct`` of a file named by ``path`` (a regular file or block device only)."""
    try:
        fd, _st = open_file(path)
    except PlanError as err:
        return None, err.msg, None
    except OSError as err:
        return None, 'cannot open %s: %s' % (path, err.strerror), None
    try:
        return _read_direct(fd, path)
    finally:
        os.close(fd)


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


_MAX_LINKS = 40


def lookups(path):
    """The names the kernel looks up on its way to ``path``, links read and followed, each yielded
    before it is looked up: a caller then knows on which name, so on which mount, a lookup hung (a
    local link into a dead NFS mount hangs on that mount, not on the link's). Stops at a name that
    cannot be looked up (the real lookup says why)."""
    pending = [part for part in (path if path.startswith('/') else os.path.join(os.getcwd(), path)).split('/')
               if part][::-1]
    resolved, links = '/', 0
    while pending:
        part = pending.pop()
        if part == '.':
            continue
        if part == '..':                # after the links before it are followed, as the kernel does
            resolved = os.path.dirname(resolved)
            continue
        step = os.path.join(resolved, part)
        yield step
        try:
            if not stat.S_ISLNK(os.lstat(step).st_mode):
                resolved = step
                continue
            links += 1
            target = os.readlink(step)
        except OSError:
            return
        if links > _MAX_LINKS:
            return
        if target.startswith('/'):
            resolved = '/'
        pending.extend([part for part in target.split('/') if part][::-1])


class HungMount(OSError):
    """A lookup not tried: its name is on a mount where an earlier read did not finish."""

    def __init__(self, mountpoint, timeout, path):
        super().__init__(errno.ETIMEDOUT, 'not read: an earlier read on %s did not finish within %d s'
                         % (mountpoint, timeout), path)
        self.mountpoint = mountpoint


class _Worker:
    """A daemon thread that runs calls one at a time (a thread per probe would cost more than many
    probes do). When a call hangs, the worker is abandoned, told to stop once it returns, and replaced.

    Before a call, and before each file the call looks up itself (``_image_chain.note_read``: a chain
    walk names every file it opens), every name on the way is noted (``lookups``): ``current`` is the
    last file, ``reached`` the last name, whose mount is the one that hung when the call does not
    return. ``watcher(name)`` may refuse a name (raise HungMount); it is held weakly, as a thread
    holding its owner would keep both alive for ever."""

    def __init__(self, watcher=None):
        self.calls = queue.SimpleQueue()
        self.current = self.reached = None
        self._watcher = weakref.WeakMethod(watcher) if watcher is not None else None
        threading.Thread(target=self._loop, name='kvmio-probe', daemon=True).start()

    def _note(self, path):
        self.current = path
        for name in lookups(path):
            self.reached = name
            watcher = self._watcher() if self._watcher is not None else None
            if watcher is not None:
                watcher(name)
            del watcher

    def _loop(self):
        watch_reads(self._note)
        while True:
            path, func, args, box, done = self.calls.get()
            if func is None:
                return
            try:
                self._note(path)
                box.append((True, func(*args)))
            except BaseException as err:  # pylint: disable=broad-except
                box.append((False, err))
            done.set()
            del func, args, box, done   # holding the last call would keep its prober (and this thread) alive

    def call(self, timeout, path, func, *args):
        """Like ``bounded``, ``path`` noted first."""
        box, done = [], threading.Event()
        self.current = self.reached = None
        self.calls.put((path, func, args, box, done))
        if not done.wait(timeout):
            return False, None
        ok, value = box[0]
        if not ok:
            raise value
        return True, value

    def stop(self):
        self._watcher = None
        self.calls.put((None, None, None, None, None))


class BoundedReads:
    """Reads of files that may sit on a hung mount (a dead NFS server, a FUSE daemon that never
    answers), one at a time in a worker thread, each bounded by ``timeout`` seconds. Once a read on a
    mount has hung, later reads under that mountpoint are not tried: one wait per dead mount, not one
    per file. The mount given up on is the one the call was on when it hung: that of the last name
    looked up (links followed; a chain walk names each file it opens, ``_image_chain.note_read``), not
    that of the first path: a local overlay whose backing file is on a dead mount, or a local link into
    one, leaves the local mount usable; and a call that reaches a mount already known to hang stops
    there at once. Used by the storage probe, qcow2_create's walk of every domain's backing chains and
    its reads of the images it is asked about, and kvm_disk_tune's read of an ``xml_path`` file."""

    def __init__(self, mounts=None, timeout=PROBE_TIMEOUT):
        self.mounts = read_mounts() if mounts is None else mounts
        self.timeout = timeout
        self._hung = set()         # mountpoints where a read did not finish
        self._worker = None

    def call(self, path, func, *args):
        """(True, func(*args)), or (False, (mountpoint, earlier, blamed)) when a mount hung: now
        (``earlier`` False: the call was abandoned after ``timeout`` while it read ``blamed``, on
        ``mountpoint``), or before (``earlier`` True: not tried, or stopped where it reached
        ``mountpoint``). An exception ``func`` raises is raised here."""
        mountpoint = self._mountpoint(path)
        if mountpoint in self._hung:
            return False, (mountpoint, True, path)
        if self._worker is None:
            self._worker = _Worker(self._refuse_hung)
            weakref.finalize(self, self._worker.stop)
        worker = self._worker
        try:
            done, value = worker.call(self.timeout, path, func, *args)
        except HungMount as err:
            return False, (err.mountpoint, True, path)
        if done:
            return True, value
        worker.stop()        # it leaves once the stuck call returns, if ever
        self._worker = None
        blamed = worker.current or path
        mountpoint = self._mountpoint(worker.reached or blamed)
        self._hung.add(mountpoint)
        return False, (mountpoint, False, blamed)

    def _mountpoint(self, path):
        return filesystem_of(os.path.abspath(path), self.mounts)[0]

    def _refuse_hung(self, name):
        """In the worker, before each name is looked up: one on a mount known to hang is not tried."""
        if self._hung:
            mountpoint = self._mountpoint(name)
            if mountpoint in self._hung:
                raise HungMount(mountpoint, self.timeout, name)

    def why(self, path, hung, doing='read'):
        """The text for a call that returned (False, ``hung``)."""
        mountpoint, earlier, blamed = hung
        if earlier:
            return 'not %s: an earlier %s on %s did not finish within %d s' % (
                {'read': 'read', 'probe': 'probed'}.get(doing, doing), doing, mountpoint, self.timeout)
        return 'the %s of %s did not finish within %d s (a hung NFS server, FUSE daemon or device?)' % (
            doing, blamed if blamed is not None else path, self.timeout)


class StorageProber:
    """Probes disk sources once per module run (many domains share directories and bases)."""

    def __init__(self, mounts=None, timeout=PROBE_TIMEOUT):
        self.reads = BoundedReads(mounts, timeout)
        self.mounts = self.reads.mounts
        self.timeout = timeout
        self._cache = {}

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
        done, value = self.reads.call(path, self._probe, path, image_format)
        if done:
            return value
        detail = self.reads.why(path, value, 'probe') + ('' if value[1] else '; could not tell')
        return StorageFacts(path=path, kind='unreadable', image_format=image_format, detail=detail)

    def _probe(self, path, image_format):
        real = os.path.realpath(path)
        fmt = image_format or DEFAULT_FORMAT

        def facts(kind, **known):
            return StorageFacts(path=path, kind=kind, image_format=image_format, **known)

        try:
            fd, st = open_file(real, nofollow=True)
        except FileNotFoundError:
            return facts('missing', detail='%s does not exist on this host' % path)
        except PlanError as err:
            return facts('unsupported', detail='%s; not read' % err.msg)
        except OSError as err:
            return facts('unreadable', detail='cannot open %s: %s' % (path, err.strerror))
        if stat.S_ISBLK(st.st_mode):
            try:
                ok, why, _header = _read_direct(fd, real)
            finally:
                os.close(fd)
            return facts('block', fstype='block device', mountpoint=None, odirect=ok, shared=False, chain=(real,),
                         detail=why)
        mountpoint, fstype = filesystem_of(real, self.mounts)
        on_file = dict(fstype=fstype, mountpoint=mountpoint, shared=fstype in SHARED_FILESYSTEMS)
        try:
            top = layer_from_fd(real, fd, st, fmt, real=real)       # closes fd if it fails
        except PlanError as err:
            # Declared qcow2 without a usable qcow2 header: its chain is unknown; O_DIRECT may still be refused.
            odirect, why = probe_odirect(real)
            if odirect is False:
                return facts('file', odirect=False, chain=(real,), detail=why, **on_file)
            return facts('file', odirect=None, chain=(real,), detail=err.msg, **on_file)
        chain = walk_chain(real, fmt, strict=False, max_depth=MAX_CHAIN, top=top)
        try:
            odirect, detail = self._odirect_of(chain)
        finally:
            chain.close()
        return facts('file', odirect=odirect, chain=tuple(layer.real for layer in chain.layers), detail=detail,
                     **on_file)

    def _odirect_of(self, chain):
        """(odirect, detail) of every file of a chain (``_image_chain.walk_chain``: each opened as the
        format its user declares, a raw file's bytes never followed): False as soon as one file refuses
        O_DIRECT, None when one could not tell or the walk stopped early."""
        odirect, detail = True, ''
        for layer in chain.layers:
            checks = [(layer.real, lambda layer=layer: _read_direct(layer.fd, layer.real))]
            if layer.data_path:             # QEMU opens an external data file as it opens the image
                checks.append((layer.data_path, lambda path=layer.data_path: _read_direct_path(path)))
            for real, check in checks:
                note_read(real)             # a hang here is on this file's mount
                ok, why, _header = check()
                if ok is False and odirect is not False:
                    _mp, layer_fs = filesystem_of(real, self.mounts)
                    odirect, detail = False, '%s on %s: %s' % (real, layer_fs, why)
                elif ok is None and odirect is True:
                    odirect, detail = None, why
        if chain.stopped and odirect is True:
            odirect, detail = None, chain.stopped
        return odirect, detail
