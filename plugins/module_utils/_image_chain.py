# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Opening images and walking their backing chains without trusting what they say.

Every file is opened here first, read-only and non-blocking, and kept only if ``fstat`` says it is
a regular file or a block device (a FIFO, a socket, a directory or a character device is refused
before anything reads it). qemu-img then gets the open descriptor (``/dev/fd/N``) in a JSON
description that names every layer and its format explicitly, so it never opens a path, a URL or
a format that an image header chose. See ``_qcow2_header`` for the header parsing.

A relative backing name means one file whatever way the image was named: it is resolved against
the image's real directory (links resolved), and also against the directory the image was named in
(what QEMU does with the path it is given); when the two lead to different files, a strict walk
refuses, and a non-strict walk (who uses what) keeps both.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import struct
import threading
from dataclasses import dataclass, field

from ._errors import PlanError
from ._qcow2_header import HEADER_READ, HeaderError, decode_name, is_protocol, is_qcow2, other_format, parse_header, \
    read_backing_name

# libvirt's QEMU driver refuses a backing chain deeper than this; a walk stops there.
MAX_CHAIN = 200
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
# QEMU's image locks are OFD locks on bytes 100-299 of the file (permissions held, permissions not
# shared); any lock there means a QEMU process has the file open, as a disk or as a backing file.
_QEMU_LOCK_START, _QEMU_LOCK_LEN = 100, 200
_F_OFD_GETLK = getattr(fcntl, 'F_OFD_GETLK', 36)
_FLOCK = 'hhqqi4x'
# struct loop_info64 (linux/loop.h) as LOOP_GET_STATUS64 returns it: lo_device and lo_inode come first.
_LOOP_GET_STATUS64 = 0x4C05
_LOOP_INFO64 = struct.Struct('=QQQQQIIII64s64s32sQQ')


_THREAD = threading.local()


def watch_reads(watcher):
    """Makes ``watcher(path)`` be called (in this thread) before each path this module looks up: the
    bounded reader (``_storage_probe.BoundedReads``) running a walk then knows which file a hang
    happened on (a local overlay's backing file on a dead mount hangs on that mount, not the
    overlay's), and refuses at once a path on a mount already known to hang (the watcher raises
    OSError). None stops it."""
    _THREAD.watcher = watcher


def note_read(path):
    watcher = getattr(_THREAD, 'watcher', None)
    if watcher is not None:
        watcher(path)


def printable(path):
    """A path as text for messages and results: undecodable bytes shown as \\xNN, never a traceback."""
    return os.fsencode(path).decode('utf-8', errors='backslashreplace')


def kind_of(mode):
    if stat.S_ISREG(mode):
        return 'file'
    if stat.S_ISBLK(mode):
        return 'block'
    if stat.S_ISDIR(mode):
        return 'directory'
    if stat.S_ISFIFO(mode):
        return 'FIFO'
    if stat.S_ISSOCK(mode):
        return 'socket'
    if stat.S_ISCHR(mode):
        return 'character device'
    if stat.S_ISLNK(mode):
        return 'symbolic link'
    return 'special file'


def not_an_image(path, kind):
    if kind == 'directory':
        return PlanError('%s is a directory, not an image file' % printable(path))
    return PlanError('%s is a %s, not a regular file or block device, so not an image' % (printable(path), kind))


@dataclass
class Layer:
    """One file of a backing chain, open read-only (``fd``) until ``close()``."""

    path: str                 # as named: by the caller, or by the overlay's header (made absolute)
    real: str                 # symlinks resolved
    fmt: str                  # qcow2 | raw
    kind: str                 # file | block
    fd: int
    st: os.stat_result
    head: bytes = b''
    header: object = None     # Qcow2Header of a qcow2 layer
    backing_name: str | None = None    # as the header writes it
    backing_other: str | None = None   # non-strict walks: the other resolution of a relative name, when it differs
    data_path: str | None = None       # non-strict walks: the external data file the header names

    @property
    def ident(self):
        return (self.st.st_dev, self.st.st_ino)

    @property
    def fd_path(self):
        return '/dev/fd/%d' % self.fd

    def size(self):
        """File size, or a block device's size."""
        if self.kind == 'block':
            return os.lseek(self.fd, 0, os.SEEK_END)
        return self.st.st_size

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_file(path, nofollow=False, dir_fd=None):
    """(fd, stat) of a regular file or block device, opened read-only and non-blocking.

    The name is first resolved to an inode with ``O_PATH`` (which opens nothing: no FIFO wait, no
    tape rewind), following a link unless ``nofollow``; ``fstat`` of that says what it is, and only a
    regular file or block device is then opened, through ``/proc/self/fd`` (the same inode, whatever
    the name leads to by then). Raises FileNotFoundError for a missing file and PlanError for
    anything that is not an image.
    """
    flags = os.O_PATH | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
    if dir_fd is None:
        note_read(path)
    handle = os.open(path, flags, dir_fd=dir_fd)
    try:
        kind = kind_of(os.fstat(handle).st_mode)
        if kind not in ('file', 'block'):
            raise not_an_image(path, kind)
        fd = os.open('/proc/self/fd/%d' % handle, _OPEN_FLAGS)
    finally:
        os.close(handle)
    try:
        st = os.fstat(fd)
        kind = kind_of(st.st_mode)
        if kind not in ('file', 'block'):
            raise not_an_image(path, kind)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def real_path_of(fd, path):
    """The path the kernel has for the file open at ``fd`` (links resolved, as it was opened), or the
    resolved ``path`` when the kernel has none (the file was unlinked meanwhile)."""
    try:
        found = os.readlink('/proc/self/fd/%d' % fd)
    except OSError:
        return os.path.realpath(path)
    return found if found.startswith('/') and not found.endswith(' (deleted)') else os.path.realpath(path)


def read_head(fd, size=HEADER_READ):
    try:
        return os.pread(fd, size, 0)
    except OSError as err:
        raise PlanError('cannot read the image header: %s' % err.strerror) from None


def head_format(head):
    """'qcow2', another format's name, or None (no magic: raw) from the first bytes of a file."""
    if is_qcow2(head):
        return 'qcow2'
    return other_format(head)


def open_layer(path, fmt, nofollow=False):
    """A Layer for ``path`` read as ``fmt``; for qcow2 its header parsed and its backing name read."""
    fd, st = open_file(path, nofollow=nofollow)
    return layer_from_fd(path, fd, st, fmt)


def layer_from_fd(path, fd, st, fmt, real=None):
    """A Layer around an open descriptor (closed if reading it fails)."""
    layer = Layer(path=path, real=real or real_path_of(fd, path), fmt=fmt, kind=kind_of(st.st_mode), fd=fd, st=st)
    try:
        layer.head = read_head(fd)
        if fmt == 'qcow2':
            try:
                layer.header = parse_header(layer.head)
            except HeaderError as err:
                raise PlanError('%s is not a qcow2 image QEMU would open: %s' % (printable(path), err)) from None
            if layer.header.has_backing:
                offset, size = layer.header.backing_span()
                raw = layer.head[offset:offset + size] if offset + size <= len(layer.head) else os.pread(fd, size, offset)
                layer.backing_name = decode_name(raw)
    except BaseException:
        layer.close()
        raise
    return layer


def resolve_relative(name, named_path, real_path):
    """(the path ``name`` means beside the image, the other meaning or None): one rule for the relative
    names an image records (backing file, data file) and for a requested relative ``backing_file``.

    A relative name is taken against the image's real directory (``real_path``: links resolved). QEMU
    takes it against the directory of the path it was given (``named_path``), which differs when a
    directory on that path is a link and the name climbs out of it (``../base.qcow2``). When the two
    lead to different files, the second is returned too; when they lead to the same file (or both to
    nothing), it is None.
    """
    if os.path.isabs(name):
        return name, None
    by_real = os.path.join(os.path.dirname(real_path), name)
    by_name = os.path.join(os.path.dirname(named_path), name)
    if by_real == by_name or _same_target(by_real, by_name):
        return by_real, None
    return by_real, by_name


def _same_target(first, second):
    idents = []
    for path in (first, second):
        try:
            note_read(path)
            st = os.stat(path)
        except OSError:
            idents.append(None)
        else:
            idents.append((st.st_dev, st.st_ino))
    return idents[0] == idents[1]


def backing_path(layer):
    """The absolute path a layer's backing name means (``resolve_relative``)."""
    return resolve_relative(layer.backing_name, layer.path, layer.real)[0]


def two_meanings(name, path, other, image):
    return PlanError('%s names %s, which is %s seen from the real directory of the image and %s seen from the '
                     'directory it was named in (%s); name the file by an absolute path, or name the image by its '
                     'real path' % (printable(image), printable(name), printable(path), printable(other),
                                    printable(os.path.dirname(image))))


@dataclass
class Chain:
    """An image and its backing files, top first, each open until ``close()``."""

    layers: list = field(default_factory=list)
    stopped: str = ''          # non-strict walks: why the walk stopped before the chain's end
    remote_backing: str = ''   # the last layer's backing file is a URL or JSON description (not followed)
    # Non-strict walks: why files past the last layer may exist unknown to the walk (a layer that
    # could not be read, a format whose backing files are not read here, the depth limit), as opposed
    # to an end QEMU would meet too (a missing file, a FIFO, a loop); '' when there are none.
    incomplete: str = ''

    @property
    def top(self):
        return self.layers[0]

    def close(self):
        for layer in self.layers:
            layer.close()

    def fds(self):
        return [layer.fd for layer in self.layers]

    def node(self, start=0, backing=True):
        """The blockdev description of the layers from ``start``, every file by descriptor.

        ``backing=True`` names every backing layer explicitly (the last ends in ``null``, whatever its
        header says); ``backing=False`` leaves the key out (``qemu-img info`` opens no backing file and
        refuses the key).
        """
        node = None
        for layer in reversed(self.layers[start:]):
            node = image_node(layer.fmt, layer.fd_path, layer.kind == 'block', backing=node if backing else Ellipsis)
        return node

    def spec(self, start=0, backing=True):
        """``node`` as the ``json:`` file name qemu-img takes."""
        return json_spec(self.node(start, backing))


def image_node(fmt, filename, block=False, backing=None):
    """A blockdev description: ``backing`` None ends the chain, Ellipsis leaves the key out."""
    node = {'driver': fmt, 'file': {'driver': 'host_device' if block else 'file', 'filename': filename}}
    if fmt == 'qcow2' and backing is not Ellipsis:
        node['backing'] = backing
    return node


def json_spec(node):
    return 'json:' + json.dumps(node, sort_keys=True)


def walk_chain(path, fmt, nofollow=False, strict=True, max_depth=MAX_CHAIN, top=None):
    """The Chain of ``path`` read as ``fmt``: qcow2 layers' backing files, formats from their headers.

    ``top``: the first Layer, already open (the chain then owns it). A raw layer ends the chain
    whatever its bytes say, and so does one of another format (its bytes are not parsed). A backing
    file whose format the overlay does not record is opened as raw, as libvirt's QEMU driver opens it
    (it refuses to probe the format of a backing file; probing would let the file's bytes, perhaps a
    guest's, choose). Relative names follow ``resolve_relative``.

    ``strict`` raises PlanError for anything qcow2_create cannot follow safely (a URL or JSON backing
    name, a missing file, a loop, a format other than qcow2/raw, an external data file, a relative name
    with two meanings, more than ``max_depth`` layers). Otherwise (who uses what, storage probes) the
    walk stops there and ``Chain.stopped`` says why, ``Chain.incomplete`` whether files may lie beyond;
    an external data file is recorded (``Layer.data_path``) and the walk goes on, a second meaning of a
    relative name is recorded (``Layer.backing_other``), a JSON backing name is read as libvirt reads it
    (``read_backing_name``: a local file it names is followed, one that names a network protocol is not
    a stop, ``Chain.remote_backing`` names it, and any other makes the walk incomplete), as is a URL.
    A non-strict walk whose first file cannot be opened returns a Chain without layers.
    """
    chain = Chain()
    current, current_fmt, seen = path, fmt, set()

    def stop(message, incomplete):
        if strict:
            chain.close()
            raise PlanError(message)
        chain.stopped = message
        chain.incomplete = message if incomplete else ''
        return chain

    try:
        while True:
            if top is not None and not chain.layers:
                layer = top
            else:
                try:
                    fd, st = open_file(current, nofollow=nofollow and not chain.layers)
                except FileNotFoundError:
                    return stop('backing file %s of %s is missing' % (printable(current), printable(path))
                                if chain.layers else '%s does not exist' % printable(path), False)
                except PlanError as err:
                    return stop(err.msg, False)          # a FIFO, a directory...: QEMU cannot read past it either
                except OSError as err:
                    return stop('cannot read %s: %s' % (printable(current), err.strerror), True)
                try:
                    layer = layer_from_fd(current, fd, st, current_fmt)
                except PlanError as err:
                    return stop(err.msg, True)
                except OSError as err:
                    return stop('cannot read %s: %s' % (printable(current), err.strerror), True)
            chain.layers.append(layer)
            if layer.ident in seen:
                return stop('the backing chain of %s loops at %s' % (printable(path), printable(current)), False)
            seen.add(layer.ident)
            header = layer.header
            if header is not None and header.external_data_file:
                if strict or not header.data_file:
                    return stop('%s has an external data file (%s); qcow2_create does not handle such images'
                                % (printable(current), printable(header.data_file or '?')), True)
                layer.data_path, _other = resolve_relative(header.data_file, layer.path, layer.real)
            if header is not None and header.encrypted and strict:
                return stop('%s is an encrypted qcow2 image; qcow2_create does not handle such images'
                            % printable(current), True)
            if layer.fmt not in ('qcow2', 'raw'):
                # Not a stop for the probe (as before), but what lies behind such a layer is unknown.
                chain.incomplete = '%s is read as %s, whose backing files are not read here' % (
                    printable(current), layer.fmt)
                return chain
            if layer.backing_name is None:
                return chain
            name = layer.backing_name
            if is_protocol(name) and strict:
                return stop('%s names %s as its backing file, which is not a local file; qcow2_create follows '
                            'only local files (write ./%s if it is one)'
                            % (printable(current), printable(name), printable(name)), False)
            local = None
            if is_protocol(name):
                # As libvirt reads it: a json: name may name a local file, which the chain uses.
                read = read_backing_name(name)
                if read.kind == 'remote':
                    chain.remote_backing = name
                    return chain
                if read.kind == 'unknown':
                    return stop('%s names %s as its backing file: %s' % (printable(current), printable(name),
                                                                         read.why), True)
                # QEMU under libvirtd opens a relative filename of a JSON description from '/'.
                local = read.path if read.path.startswith('/') else '/' + read.path
            if len(chain.layers) >= max_depth:
                return stop('the backing chain of %s is longer than %d files' % (printable(path), max_depth), True)
            current, other = (local, None) if local is not None else resolve_relative(name, layer.path, layer.real)
            if other is not None:
                if strict:
                    raise two_meanings(name, current, other, layer.path)
                layer.backing_other = other
            current_fmt = header.backing_format or 'raw'
            if current_fmt not in ('qcow2', 'raw') and strict:
                return stop('%s names its backing file %s as %s; qcow2_create reads only qcow2 and raw images'
                            % (printable(layer.path), printable(current), current_fmt), False)
    except BaseException:
        chain.close()
        raise


def loop_backing(fd):
    """(st_dev, st_ino) of the file behind the loop device open at ``fd``, and its name as the kernel
    has it; None when ``fd`` is no loop device (or not attached)."""
    try:
        answer = fcntl.ioctl(fd, _LOOP_GET_STATUS64, bytes(_LOOP_INFO64.size))
    except OSError:
        return None
    fields = _LOOP_INFO64.unpack(answer)
    device, inode, number = fields[0], fields[1], fields[5]
    try:
        with open('/sys/block/loop%d/loop/backing_file' % number, 'rb') as handle:
            name = os.fsdecode(handle.read().rstrip(b'\n'))
    except OSError:
        name = os.fsdecode(fields[9].rstrip(b'\0'))
    return (device, inode), name


# Block devices followed from one disk (partitions, slaves, loops on loops): far more than any real stack.
MAX_BLOCK_DEVICES = 64


def block_backing_files(st):
    """([(file identity, loop device, its backing file's name)], why the list may be incomplete or '')
    of the files behind the block device ``st`` (its stat): the backing file of every loop device under
    it, followed through partitions (the disk they are on), ``/sys/block/*/slaves`` (device-mapper,
    md, bcache over other devices) and loop devices whose backing file is itself a block device (a loop
    on a loop). Each loop device is opened under /dev by its kernel name and checked to be that device
    before its backing file is asked for (``loop_backing``: the identity the kernel holds, not a name)."""
    found, pending, seen = [], [_sysfs_dir(st.st_rdev)], set()
    while pending:
        sysdir = pending.pop()
        if sysdir is None or sysdir in seen:
            continue
        if len(seen) >= MAX_BLOCK_DEVICES:
            return found, 'more than %d block devices under %s; the files behind the rest are not known' % (
                MAX_BLOCK_DEVICES, sysdir)
        seen.add(sysdir)
        if os.path.exists(os.path.join(sysdir, 'partition')):
            pending.append(os.path.dirname(sysdir))      # a partition: the disk it is on holds its data
            continue
        try:
            slaves = os.listdir(os.path.join(sysdir, 'slaves'))
        except OSError:
            slaves = []
        pending.extend(os.path.realpath(os.path.join(sysdir, 'slaves', name)) for name in slaves)
        if os.path.isdir(os.path.join(sysdir, 'loop')):
            device = '/dev/' + os.path.basename(sysdir)
            behind = _loop_of(device, sysdir)
            if behind is None:
                return found, 'cannot read which file the loop device %s is on' % device
            ident, name = behind
            found.append((ident, device, name))
            under = _block_file(name, ident)
            if under is not None:                # a loop on a block device: follow that device too
                pending.append(_sysfs_dir(under.st_rdev))
    return found, ''


def _sysfs_dir(rdev):
    """The sysfs directory of the block device ``rdev``, or None."""
    number = '%d:%d' % (os.major(rdev), os.minor(rdev))
    path = '/sys/dev/block/' + number
    if os.path.exists(path):
        return os.path.realpath(path)
    # Some sysfs views (containers) have an empty /sys/dev/block: every device's 'dev' file says its numbers.
    try:
        names = os.listdir('/sys/class/block')
    except OSError:
        return None
    for name in names:
        try:
            with open('/sys/class/block/%s/dev' % name, encoding='ascii') as handle:
                if handle.read().strip() == number:
                    return os.path.realpath('/sys/class/block/' + name)
        except OSError:
            continue
    return None


def _loop_of(device, sysdir):
    """``loop_backing`` of the loop device ``device`` if it is the device of ``sysdir``; None if not."""
    try:
        with open(os.path.join(sysdir, 'dev'), encoding='ascii') as handle:
            major, minor = (int(n) for n in handle.read().split(':'))
        fd, st = open_file(device, nofollow=True)
    except (OSError, ValueError, PlanError):
        return None
    try:
        if not stat.S_ISBLK(st.st_mode) or st.st_rdev != os.makedev(major, minor):
            return None
        return loop_backing(fd)
    finally:
        os.close(fd)


def _block_file(name, ident):
    """The stat of the block device a loop device's backing file is, when ``name`` still names it."""
    try:
        st = os.stat(name)
    except OSError:
        return None
    return st if stat.S_ISBLK(st.st_mode) and (st.st_dev, st.st_ino) == ident else None


def qemu_holds(fd):
    """True when a QEMU process holds one of its image locks on the open file ``fd``."""
    query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, _QEMU_LOCK_START, _QEMU_LOCK_LEN, 0)
    try:
        answer = fcntl.fcntl(fd, _F_OFD_GETLK, query)
    except OSError:
        return False
    return struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK
