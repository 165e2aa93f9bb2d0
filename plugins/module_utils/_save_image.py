# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Save a running domain, change the XML of its save image, restore it: settings a running QEMU
cannot change (io, iothread) applied with a pause of seconds instead of a restart.

The sequence is ``virsh save`` -> ``save-image-define`` -> ``restore``. ``save-image-define``
(virDomainSaveImageDefineXML) checks the guest ABI and validates the XML, and leaves the image as it
was when it refuses. ``restore --xml`` and ``save --xml`` are not used: a ``restore --xml`` that
fails leaves the domain shut off, and ``save --xml`` accepts an XML the restore then rejects.
On any failure after the save, the unchanged image is restored, so the guest runs as it did.

A save image holds the guest's memory: it goes to a directory only root can enter, created here,
after a check that the filesystem has room for it, and is removed once the domain runs again. The
only image kept is one whose domain could not be restored at all: it is the guest's memory.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

from ._errors import ApplyError, KvmioError
from ._trusted_files import private_directory as trusted_private_directory

DEFAULT_SAVE_DIR = '/var/lib/kvmio/save'
# Room left besides the guest's memory (the image's header and XML, and the filesystem's own margin).
SPACE_MARGIN = 64 * 1024 * 1024


def private_directory(path):
    """Creates ``path`` (mode 0700) when missing and returns its real path once ``_trusted_files`` finds
    that only root or this user can change it and every directory (and link) above it, as for backups;
    and, since save images hold guest memory, that it is this user's own and closed to everyone else
    (``_trusted_files.private_directory``: one rule for every private directory)."""
    try:
        return trusted_private_directory(path, 'save_dir')
    except KvmioError as err:
        suffix = ': save images hold guest memory' if 'mode 0700' in err.msg else ''
        raise KvmioError('%s%s; nothing was saved' % (err.msg, suffix), **err.details) from None


def check_free_space(directory, needed, name):
    usage = os.statvfs(directory)
    free = usage.f_bavail * usage.f_frsize
    if free < needed + SPACE_MARGIN:
        raise KvmioError('domain %s: its save image needs about %d MiB (its memory) and %s has %d MiB free'
                         % (name, (needed + SPACE_MARGIN) >> 20, directory, free >> 20), domain=name)
    return free


@dataclass
class PauseReport:
    """How long the guest was stopped, measured with a monotonic clock from the save call to the
    restore's return (vCPUs stop at the start of the save and run again at the end of the restore)."""

    pause_seconds: float = 0.0
    save_seconds: float = 0.0
    define_seconds: float = 0.0
    restore_seconds: float = 0.0
    image_bytes: int = 0
    restored_unchanged: bool = False
    error: str = ''

    def as_dict(self):
        return {'pause_seconds': round(self.pause_seconds, 3), 'save_seconds': round(self.save_seconds, 3),
                'define_seconds': round(self.define_seconds, 3), 'restore_seconds': round(self.restore_seconds, 3),
                'image_bytes': self.image_bytes}


def _remove(path, run_dir):
    for remove, target in ((os.unlink, path), (os.rmdir, run_dir)):
        try:
            remove(target)
        except FileNotFoundError:
            pass


def save_define_restore(client, dom, save_dir, new_xml):
    """Saves ``dom``, gives its image the XML ``new_xml(image_xml)`` returns, restores it.

    Returns a PauseReport; ``restored_unchanged`` and ``error`` say when the change was refused and
    the guest restored as it was. Raises ApplyError only when the guest could not be restored at all
    (its image is then kept, and the message says how to restore it).
    """
    name = dom.name()
    run_dir = tempfile.mkdtemp(prefix='kvmio-save-', dir=save_dir)
    path = os.path.join(run_dir, 'domain.save')
    report = PauseReport()
    keep = False
    start = time.monotonic()
    try:
        client.save(dom, path)
    except KvmioError as err:
        _remove(path, run_dir)
        report.error = '%s; the domain kept running unchanged' % err.msg
        report.restored_unchanged = True
        return report
    try:
        saved = time.monotonic()
        report.save_seconds = saved - start
        report.image_bytes = os.path.getsize(path)
        original = client.save_image_xml(path)
        try:
            client.save_image_define(path, new_xml(original))
        except Exception as err:    # pylint: disable=broad-except  # any failure here: restore it unchanged
            # save-image-define leaves the image as it was when it refuses: it is restored unchanged below.
            why = err.msg if isinstance(err, KvmioError) else '%s: %s' % (type(err).__name__, err)
            report.error = '%s; the domain was restored unchanged' % why
            report.restored_unchanged = True
        defined = time.monotonic()
        report.define_seconds = defined - saved
        try:
            client.restore(path)
        except KvmioError as err:
            if report.restored_unchanged:
                raise
            # The domain is shut off: give the image its original XML back and restore that.
            report.error = '%s; the domain was restored unchanged' % err.msg
            report.restored_unchanged = True
            client.save_image_define(path, original)
            client.restore(path)
        report.restore_seconds = time.monotonic() - defined
        report.pause_seconds = time.monotonic() - start
        return report
    except Exception as err:    # pylint: disable=broad-except  # the guest is stopped: never leave silently
        keep = True
        why = err.msg if isinstance(err, KvmioError) else '%s: %s' % (type(err).__name__, err)
        raise ApplyError('domain %s could not be restored after its save (%s): it is shut off and its memory is '
                         'kept in %s; restore it with: virsh restore %s' % (name, why, path, path),
                         domain=name, save_image=path) from None
    finally:
        if not keep:
            _remove(path, run_dir)
