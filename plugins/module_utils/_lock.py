# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""A per-host lock, so that two runs on the same libvirt (or the same image) take turns.

An advisory ``flock`` on a file named after what is locked; the kernel drops it when the process
dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time

from ._errors import KvmioError

LOCK_DIRS = ('/run/lock', '/var/lock')
LOCK_ARGUMENT_SPEC = {'lock_timeout': {'type': 'int', 'default': 300}}


def lock_path(subject):
    """A lock file for ``subject`` (a libvirt URI or an image path) in a directory every run sees."""
    # Per user too: qemu:///session of two users are two different hosts' worth of libvirt.
    digest = hashlib.sha256(('%d:%s' % (os.geteuid(), subject)).encode('utf-8')).hexdigest()[:16]
    for directory in LOCK_DIRS + (tempfile.gettempdir(),):
        if os.path.isdir(directory) and os.access(directory, os.W_OK):
            return os.path.join(directory, 'kvmio-tuning-%s.lock' % digest)
    raise KvmioError('no writable directory for the kvmio.tuning lock (tried %s)' % ', '.join(LOCK_DIRS))


class HostLock:
    """``with HostLock(uri, timeout):`` waits up to ``timeout`` seconds for other runs to finish."""

    def __init__(self, subject, timeout=300):
        self.subject = subject
        self.timeout = timeout
        self.path = lock_path(subject)
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(self.fd, 64, 0).decode('ascii', 'replace').strip() or 'unknown'
                    os.close(self.fd)
                    self.fd = None
                    raise KvmioError('another kvmio.tuning run (pid %s) has been working on %s for more than %d s '
                                     '(lock %s); nothing was changed. Run again when it has finished.'
                                     % (holder, self.subject, self.timeout, self.path)) from None
                time.sleep(0.1)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode('ascii'), 0)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        return False
