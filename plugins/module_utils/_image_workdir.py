# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Where a new image is written before it takes its name: a private directory beside the image.

The image directory may be writable by others (a misconfiguration, but a common one), so every
name in it may be a trap: a symlink planted under the name of our temporary file, a directory
renamed under us. So nothing is ever written by a name in that directory:

- the work directory is made with ``mkdir(0700)`` under a random name (fails if the name exists),
  opened ``O_NOFOLLOW``, and checked to be ours (owner, mode) through its descriptor;
- qemu-img writes ``/dev/fd/N/new.qcow2``, N being that descriptor, so renaming the directory or
  planting a look-alike changes nothing;
- the result reaches the image's name by ``link``/``rename`` between directory descriptors.

A run holds an ``flock`` on its work directory: the kernel drops it when the run dies, so the next
run can tell a dead run's directory (and only one it owns) from a live one, and remove it.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat

from ._errors import ApplyError
from ._image_chain import printable
from ._trusted_files import untrusted_problem

NEW_IMAGE = 'new.qcow2'
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NAME_BYTES = 120          # so that '.NAME.kvmio-<16 hex>.tmp' fits in a 255-byte file name
_WORKDIR_RE = re.compile(r'\.kvmio-[0-9a-f]{16}\.tmp$')
NAME_MAX = 255             # bytes in a file name (Linux filesystems)
_BACKUP_SUFFIX_BYTES = len('.YYYYMMDDTHHMMSSZ-99.orig')


def _short(name):
    return os.fsdecode(os.fsencode(name)[:_NAME_BYTES])


def workdir_prefix(image_name):
    return '.%s.kvmio-' % _short(image_name)


def open_directory(path, problems=None):
    """A descriptor of the directory ``path``, an absolute path already resolved (no symlinks on it).

    Opened one component at a time without following links: if a directory on the way was replaced
    by a link since ``path`` was resolved (a user renaming directories in a pool others can write),
    this fails (ELOOP or ENOTDIR) instead of leading elsewhere.

    ``problems`` (a list): the first directory on the way another user can change is appended to it,
    judged by ``_trusted_files.untrusted_problem`` on each descriptor as it is opened (a sticky
    directory above passes; the directory itself must not be writable by others even when sticky).
    A writable directory anywhere above lets its users rename what lies below, so one there is as bad
    as the image's own directory being writable.
    """
    fd = os.open('/', _DIR_FLAGS)
    parts = [p for p in path.split('/') if p]
    current = '/'
    try:
        for index in range(len(parts) + 1):
            if problems is not None and not problems:
                problem = untrusted_problem(current, os.fstat(fd), allow_sticky=index < len(parts))
                if problem:
                    problems.append(problem)
            if index == len(parts):
                break
            child = os.open(parts[index], _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            current = os.path.join(current, parts[index])
    except BaseException:
        os.close(fd)
        raise
    return fd


def same_file(st, other):
    return (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino)


def entry_stat(dir_fd, name):
    """lstat of ``name`` in the directory ``dir_fd``, or None when it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _is_ours(st):
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700


class WorkDir:
    """A private directory beside an image (``with WorkDir(dir_fd, dir_path, image_name) as work:``)."""

    def __init__(self, dir_fd, dir_path, image_name):
        self.dir_fd = dir_fd
        self.dir_path = dir_path
        self.image_name = image_name
        self.name = None
        self.fd = None
        self.st = None

    @property
    def path(self):
        return os.path.join(self.dir_path, self.name)

    def __enter__(self):
        for _attempt in range(16):
            name = '%s%s.tmp' % (workdir_prefix(self.image_name), secrets.token_hex(8))
            try:
                os.mkdir(name, 0o700, dir_fd=self.dir_fd)
            except FileExistsError:
                continue
            except OSError as err:
                raise ApplyError('cannot make a temporary directory beside %s: %s; nothing was changed'
                                 % (printable(os.path.join(self.dir_path, self.image_name)), err.strerror)) from None
            self.name = name
            break
        else:
            raise ApplyError('cannot find a free temporary name beside %s' % printable(self.dir_path))
        try:
            self.fd = os.open(self.name, _DIR_FLAGS, dir_fd=self.dir_fd)
            self.st = os.fstat(self.fd)
            if self.st.st_uid != os.geteuid():
                raise ApplyError('the temporary directory %s was replaced by another user right after this run made '
                                 'it; nothing was changed' % printable(self.path))
            os.fchmod(self.fd, 0o700)          # whatever the umask did
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            self._close()
            raise ApplyError('cannot use the temporary directory %s: %s; nothing was changed'
                             % (printable(self.path), err.strerror)) from None
        except BaseException:
            self._close()
            raise
        return self

    def file_path(self, name=NEW_IMAGE):
        """A path to a file in this directory that goes through its descriptor (for qemu-img)."""
        return '/dev/fd/%d/%s' % (self.fd, name)

    def open(self, name=NEW_IMAGE, flags=os.O_RDWR):
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)

    def link_into_place(self, target_name, name=NEW_IMAGE):
        """Gives the new file ``target_name`` in the image directory; fails if that name exists."""
        os.link(name, target_name, src_dir_fd=self.fd, dst_dir_fd=self.dir_fd, follow_symlinks=False)

    def replace_into_place(self, target_name, name=NEW_IMAGE):
        os.replace(name, target_name, src_dir_fd=self.fd, dst_dir_fd=self.dir_fd)

    def __exit__(self, *exc):
        if self.fd is not None:
            for entry in os.listdir(self.fd):
                try:
                    os.unlink(entry, dir_fd=self.fd)
                except OSError:
                    pass
            name = self._current_name()
            if name is not None:
                try:
                    os.rmdir(name, dir_fd=self.dir_fd)
                except OSError:
                    pass
        self._close()
        return False

    def _current_name(self):
        """The name this directory has in the image directory now: the one it was made with, or the one
        another user renamed it to there (a directory others can write); None when it is elsewhere. An
        empty directory only, so a name swapped once more before the rmdir costs nothing."""
        current = entry_stat(self.dir_fd, self.name)
        if current is not None and same_file(current, self.st):
            return self.name
        try:
            names = os.listdir(self.dir_fd)
        except OSError:
            return None
        for name in names:
            current = entry_stat(self.dir_fd, name)
            if current is not None and same_file(current, self.st):
                return name
        return None

    def _close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def remove_dead_workdirs(dir_fd, dir_path, image_name):
    """Work directories of runs on ``image_name`` that died (SIGKILL, power loss): removed, paths returned.

    Only a real directory this user owns with mode 0700 and no live run's lock counts as one; a
    look-alike someone else planted (a symlink, a file, a directory of another owner) is left alone.
    """
    removed = []
    prefix = workdir_prefix(image_name)
    for name in os.listdir(dir_fd):
        if not (name.startswith(prefix) and _WORKDIR_RE.match(name[len(prefix) - len('.kvmio-'):])):
            continue
        st = entry_stat(dir_fd, name)
        if st is None or not _is_ours(st):
            continue
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError:
            continue
        try:
            if not same_file(os.fstat(fd), st):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue                        # a live run
            for entry in os.listdir(fd):
                os.unlink(entry, dir_fd=fd)     # only this user can have put files here (0700)
            current = entry_stat(dir_fd, name)
            if current is not None and same_file(current, st):
                os.rmdir(name, dir_fd=dir_fd)
                removed.append(os.path.join(dir_path, name))
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def backup_prefix(image_name):
    """The part of a backup's name that stands for the image: its name, or, when that would not fit in
    NAME_MAX bytes with the time stamp and a counter, its first bytes, ``~`` and a hash of the whole
    name (as domain backups do), so that a long image name fails nowhere, least of all after a conversion."""
    encoded = os.fsencode(image_name)
    room = NAME_MAX - _BACKUP_SUFFIX_BYTES
    if len(encoded) <= room:
        return image_name
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    return os.fsdecode(encoded[:room - len(digest) - 1] + b'~' + digest.encode('ascii'))


def backup_name(image_name, dir_fd, now=None):
    """``NAME.YYYYMMDDTHHMMSSZ.orig`` (NAME shortened by ``backup_prefix`` when needed), with a counter
    if that name is taken."""
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime('%Y%m%dT%H%M%SZ')
    prefix = backup_prefix(image_name)
    for count in range(100):
        name = '%s.%s%s.orig' % (prefix, stamp, '-%d' % count if count else '')
        if entry_stat(dir_fd, name) is None:
            return name
    raise ApplyError('no free backup name for %s' % printable(image_name))


def link_backup(dir_fd, image_name, name, expected):
    """Hard-links the image (not a symlink to it) as ``name`` and checks that it is the file ``expected``."""
    try:
        os.link(image_name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except OSError as err:
        if err.errno == errno.EEXIST:
            raise ApplyError('the backup name %s appeared meanwhile' % printable(name)) from None
        raise
    linked = entry_stat(dir_fd, name)
    if linked is None or not same_file(linked, expected):
        if linked is not None:
            os.unlink(name, dir_fd=dir_fd)
        raise ApplyError('%s was replaced while this run converted it; nothing was changed' % printable(image_name))


def fsync_dir(dir_fd):
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
