# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""A per-host lock, so that two runs on the same libvirt (or the same image) take turns.

An advisory ``flock`` on a file named after what is locked; the kernel drops it when the process
dies, so a killed run never leaves a stale lock behind.

The files live in a directory only the running user can write (``/run/kvmio-tuning`` for root,
``$XDG_RUNTIME_DIR/kvmio-tuning`` or ``/tmp/kvmio-tuning-UID`` for others), checked on every run: in a
shared directory such as ``/run/lock``, another user could plant a symlink where the lock file goes
(root would then create or truncate the file it points to) or create and hold the lock to block every
run. The lock file holds nothing: who holds the lock is read from the kernel (``/proc/locks``), never
from the file.

Lock files of images (one per image path ever handled) are removed when their run ends, safely: a
run removes the file only while it holds the lock, and a run that got the lock checks that the file
it locked is still the one at the name (else it locked a removed file, and opens the name again), so
two runs never both hold "the" lock of one subject.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import tempfile
import time

from ._errors import KvmioError
from ._trusted_files import UntrustedPath, file_kind, owner_name, trusted_directory

ROOT_LOCK_DIR = '/run/kvmio-tuning'
ROOT_LOCK_DIR_FALLBACK = '/var/lib/kvmio/lock'      # hosts without /run
LOCK_ARGUMENT_SPEC = {'lock_timeout': {'type': 'int', 'default': 300}}


def lock_directory():
    """The running user's private lock directory (created 0700 and checked; see the module doc)."""
    uid = os.geteuid()
    if uid == 0:
        path = ROOT_LOCK_DIR if os.path.isdir(os.path.dirname(ROOT_LOCK_DIR)) else ROOT_LOCK_DIR_FALLBACK
    elif os.environ.get('XDG_RUNTIME_DIR', '').startswith('/'):
        path = os.path.join(os.environ['XDG_RUNTIME_DIR'], 'kvmio-tuning')
    else:
        path = os.path.join(tempfile.gettempdir(), 'kvmio-tuning-%d' % uid)
    what = 'the kvmio.tuning lock directory %s' % path
    real = trusted_directory(path, what, create=True, mode=0o700)
    st = os.lstat(real)
    if st.st_uid != uid:
        # Root-owned is trusted elsewhere, but a user's locks must be their own: this one was made by
        # someone else (another user racing to create it in /tmp, say).
        raise UntrustedPath('%s: it is owned by %s, not by the user running the module (%s); remove it, or set '
                            'XDG_RUNTIME_DIR to a directory of your own'
                            % (what, owner_name(st.st_uid), owner_name(uid)))
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(real, 0o700)       # ours, so only we (or root) changed it
    return real


def lock_path(subject, directory=None):
    """A lock file for ``subject`` (a libvirt URI or an image path) in the private lock directory."""
    # Per user too: qemu:///session of two users are two different hosts' worth of libvirt.
    digest = hashlib.sha256(('%d:%s' % (os.geteuid(), subject)).encode('utf-8', 'surrogateescape')).hexdigest()[:16]
    return os.path.join(directory or lock_directory(), '%s.lock' % digest)


def lock_holder(fd):
    """The pid holding a flock on ``fd``'s file, from the kernel's table, or None if it cannot tell."""
    st = os.fstat(fd)
    wanted = '%02x:%02x:%d' % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    try:
        with open('/proc/locks', encoding='ascii', errors='replace') as handle:
            for line in handle:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 4242 00:1a:1234 0 EOF"; waiters have "->" after the id.
                if len(fields) >= 6 and fields[1] == 'FLOCK' and fields[5] == wanted and fields[4].isdigit():
                    return int(fields[4])
    except OSError:
        return None
    return None


class HostLock:
    """``with HostLock(uri, timeout):`` waits up to ``timeout`` seconds for other runs to finish."""

    def __init__(self, subject, timeout=300, remove=False):
        self.subject = subject
        self.timeout = timeout
        self.remove = remove      # remove the lock file at the end (image locks: one file per image path)
        self.path = None
        self.fd = None

    def _open(self):
        self.path = lock_path(self.subject)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise KvmioError('cannot open the lock file %s: %s' % (self.path, err.strerror)) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            os.close(fd)
            raise UntrustedPath('the lock file %s is %s owned by %s; only this user may own it. Remove it.'
                                % (self.path, file_kind(st.st_mode), owner_name(st.st_uid)))
        if stat.S_IMODE(st.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        return fd

    def __enter__(self):
        self.fd = self._open()
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if self._still_named():
                    break
                os.close(self.fd)                   # the run before removed the file we waited on
                self.fd = self._open()
                continue
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = lock_holder(self.fd)
                    os.close(self.fd)
                    self.fd = None
                    raise KvmioError('another kvmio.tuning run (%s) has been working on %s for more than %d s '
                                     '(lock %s); nothing was changed. Run again when it has finished.'
                                     % ('pid %d' % holder if holder else 'pid unknown', self.subject, self.timeout,
                                        self.path)) from None
                time.sleep(0.1)
        return self

    def _still_named(self):
        try:
            named = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(self.fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def __exit__(self, *exc):
        if self.fd is not None:
            if self.remove:
                try:
                    os.unlink(self.path)            # while holding it: see the module doc
                except OSError:
                    pass
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        return False
