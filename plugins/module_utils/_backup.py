# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Backups of domain XML written before every redefine, and atomic file writes.

Backups go only to a directory that only root (or the running user) can change (see
``_trusted_files``): domain_restore redefines domains from what it finds there, and the files hold
the domains' secrets (graphics passwords), so a directory another user can write is refused, not used.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import tempfile

from ._backup_origin import with_origin
from ._errors import ApplyError, KvmioError
from ._parallel import map_threads
from ._trusted_files import trusted_directory

# Where modules save each domain's XML before they redefine it (option backup_dir).
DEFAULT_BACKUP_DIR = '/var/lib/kvmio/backups'

# Measured, 500 backups on ext4: 68 ms one after another, 22 ms eight at a time.
FSYNC_WORKERS = 8
NAME_MAX = 255                                          # bytes in a file name (Linux filesystems)
_STAMP_FORMAT = '%Y%m%dT%H%M%S.%f'
_SUFFIX_BYTES = len('.YYYYmmddTHHMMSS.ffffffZ.xml')
# Backups of xml_path files (kvm_disk_tune on a file, perhaps another user's template) are kept apart
# from backups of libvirt's domains, in this directory under backup_dir.
FILE_BACKUP_SUBDIR = 'xml_path'
BACKUP_NAME_RE = re.compile(r'^(?P<prefix>.+)\.(?P<stamp>\d{8}T\d{6}\.\d{6})Z\.xml$')


def backup_prefix(domain):
    """The file-name part that stands for ``domain``: the name itself (``/`` made ``_``), or, when that
    would not fit in NAME_MAX bytes with the time stamp (libvirt accepts longer names), its first bytes,
    ``~`` and a hash of the whole name. domain_restore checks the name inside the file anyway."""
    safe = domain.replace(os.sep, '_')
    encoded = safe.encode('utf-8', 'surrogateescape')
    room = NAME_MAX - _SUFFIX_BYTES
    if len(encoded) <= room:
        return safe
    digest = hashlib.sha256(domain.encode('utf-8', 'surrogateescape')).hexdigest()[:16]
    head = encoded[:room - len(digest) - 1].decode('utf-8', 'ignore')    # never half a character
    return '%s~%s' % (head, digest)


def backup_name(domain, now=None):
    """``NAME.YYYYmmddTHHMMSS.ffffffZ.xml``: sorts by time, one file per domain and run."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return '%s.%sZ.xml' % (backup_prefix(domain), now.strftime(_STAMP_FORMAT))


def backup_directory(backup_dir, create=False):
    """``backup_dir`` resolved, once it passes the trust checks (created 0700 if ``create``)."""
    return trusted_directory(backup_dir, 'backup_dir', create=create, mode=0o700)


def _fsync(path, flags=0):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path, text, mode=0o600, durable=True):
    """Writes ``text`` (str, or bytes as they are) to ``path`` through a temporary file in the same
    directory (a random name, O_EXCL), then renames.

    A reader sees the old file or the new one, never half of one; a full disk leaves the old file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.kvmio-', suffix='.tmp', dir=directory)
    try:
        with (os.fdopen(fd, 'wb') if isinstance(text, bytes) else os.fdopen(fd, 'w', encoding='utf-8')) as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def file_backup_directory(backup_dir):
    """Where backups of ``xml_path`` files go: a directory of their own under ``backup_dir``. Such a file
    may be another user's template: its backup must never be taken for a backup of a domain of
    libvirt (domain_restore reads only ``backup_dir`` itself, and refuses files from here)."""
    return os.path.join(backup_dir, FILE_BACKUP_SUBDIR)


def write_file_backup(backup_dir, file_path, text, durable=True):
    """Saves the text of the ``xml_path`` file ``file_path`` (0600) under ``file_backup_directory``,
    named after the file (not after the domain it names); returns the backup's path."""
    name = os.path.basename(file_path.rstrip('/')) or 'domain.xml'
    return write_backup(file_backup_directory(backup_dir), name, text, durable=durable, what='file %s' % file_path)


def write_backup(backup_dir, domain, xml_text, durable=True, what=None, origin=None):
    """Saves a domain's XML (0600) and returns the file's path; raises ApplyError if it cannot.
    With ``durable=False`` the caller must call ``sync_backups`` before relying on the file.
    ``origin``: the libvirt the domain is defined in (``_libvirt.lock_subject``), recorded in the
    file (``_backup_origin``) so that domain_restore restores it only there; None for the copy of an
    ``xml_path`` file, which is kept as it was."""
    text = xml_text if xml_text.endswith('\n') else xml_text + '\n'
    if origin is not None:
        text = with_origin(text, origin)
    try:
        backup_directory(backup_dir, create=True)
        path = os.path.join(backup_dir, backup_name(domain))
        write_atomic(path, text, mode=0o600, durable=durable)
    except KvmioError as err:
        raise ApplyError('cannot back up the XML of %s to %s (%s); nothing was defined for it'
                         % (what or 'domain %s' % domain, backup_dir, err.msg), domain=domain, **err.details) from None
    except OSError as err:
        raise ApplyError('cannot back up the XML of %s to %s (%s); nothing was defined for it'
                         % (what or 'domain %s' % domain, backup_dir, err.strerror or err), domain=domain) from None
    return path


def sync_backups(backup_dir, paths):
    """Makes written backups durable: an fsync per file, several at once (the filesystem journal
    batches them), then one of the directory for the new names.

    Not syncfs(2), though it is a single call: it would also force out every other dirty page of that
    filesystem, and guests with cache=writeback can hold gigabytes there.
    """
    if not paths:
        return
    try:
        map_threads(_fsync, paths, workers=FSYNC_WORKERS)
        # The directory as ``backup_directory`` resolved and checked it: a backup_dir that is a link
        # root made (to a root-only directory) is fine, and O_NOFOLLOW must not refuse it.
        _fsync(backup_directory(backup_dir), os.O_DIRECTORY)
    except KvmioError as err:
        raise ApplyError('cannot flush the backups in %s to disk (%s); nothing was defined'
                         % (backup_dir, err.msg)) from None
    except OSError as err:
        raise ApplyError('cannot flush the backups in %s to disk (%s); nothing was defined'
                         % (backup_dir, err.strerror or err)) from None
