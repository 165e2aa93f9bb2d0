# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Save a running domain, change the XML of its save image, restore it: settings a running QEMU
cannot change (io, iothread) applied with a pause of seconds instead of a restart.

The sequence is pause -> ``virsh save`` -> ``save-image-define`` -> ``restore``. The guest's vCPUs
stop first, so what the caller reads then (the write cache each guest device runs with) is what the
save image holds. ``save-image-define`` (virDomainSaveImageDefineXML) checks the guest ABI and
validates the XML, and leaves the image as it was when it refuses. ``restore --xml`` and ``save --xml``
are not used: a ``restore --xml`` that fails leaves the domain shut off, and ``save --xml`` accepts an
XML the restore then rejects.

A save image holds the guest's memory: it goes to a directory only root can enter, created here,
after a check that the filesystem has room for it, and is removed only once the domain is seen
running again. After any error the domain's state is read (on a new connection when the error was a
lost one, once libvirt's own job on the domain has ended): a domain still running is resumed if this
module paused it; a domain shut off with a complete image is restored from it; an image whose domain
cannot be restored is kept, and the error names it with the ``virsh restore`` command.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

from ._errors import ApplyError, KvmioError
from ._trusted_files import make_private_directory
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


def check_save_dir(path, needed, name):
    """In check mode, what ``private_directory`` and ``check_free_space`` would refuse, creating nothing:
    the same rule (``_trusted_files.make_private_directory`` as a dry run), and the free space of the
    deepest directory that exists."""
    try:
        real, _done = make_private_directory(path, 'save_dir', dry_run=True)
    except KvmioError as err:
        suffix = ': save images hold guest memory' if 'mode 0700' in err.msg else ''
        raise KvmioError('%s%s; nothing would be saved' % (err.msg, suffix), **err.details) from None
    existing = real
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    return check_free_space(existing, needed, name)


class DomainNotRunning(KvmioError):
    """The domain is not running (anymore): it stopped, or was saved by someone else, during the run."""


# How long to wait for libvirt's own save job to end after this module lost its connection to it.
SAVE_JOB_TIMEOUT = 1800


@dataclass
class PauseReport:
    """How long the guest was stopped, measured with a monotonic clock from the moment this module
    paused it (or the save call, for a domain already paused) until it runs again: after the
    restore's return, or after the resume when the save failed."""

    pause_seconds: float = 0.0
    save_seconds: float = 0.0
    define_seconds: float = 0.0
    restore_seconds: float = 0.0
    image_bytes: int = 0
    restored_unchanged: bool = False
    saved: bool = False             # the domain was saved (and restored: a new QEMU process runs it)
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


def _why(err):
    return err.msg if isinstance(err, KvmioError) else '%s: %s' % (type(err).__name__, err)


def _kept(name, path, why):
    return ApplyError('domain %s could not be restored after its save (%s): it is shut off and its memory is kept in '
                      '%s; restore it with: virsh restore %s' % (name, why, path, path), domain=name, save_image=path)


class _Pause:
    """One pause -> save -> define -> restore of one domain (see ``save_define_restore``)."""

    def __init__(self, client, dom, save_dir):
        self.client = client
        self.dom = dom
        self.name = dom.name()
        self.uuid = client.uuid(dom)
        self.save_dir = save_dir
        self.report = PauseReport()
        self.paused_by_us = False
        self.start = None
        self.path = self.run_dir = None
        self.refusal = None         # why the change was refused, once it is

    def stopped(self):
        self.report.pause_seconds = time.monotonic() - self.start

    def pause(self):
        running = self.client.state(self.dom) == 'running'
        self.start = time.monotonic()
        if running:
            self.client.suspend(self.dom)
            self.paused_by_us = True
        return running

    def resume(self, client=None, dom=None):
        """Runs the guest again if this module paused it; a guest left paused is an error to act on."""
        client, dom = client or self.client, dom or self.dom
        if self.paused_by_us and client.state(dom) == 'paused':
            try:
                client.resume(dom)
            except KvmioError as err:
                raise ApplyError('domain %s was paused for a save/restore and cannot be resumed (%s): resume it '
                                 'with: virsh resume %s' % (self.name, err.msg, self.name), domain=self.name) from None
        self.stopped()

    def still_active(self):
        try:
            return self.client.is_active(self.dom)
        except KvmioError:
            return True         # cannot tell: act as if it runs (resume it), and say so if that fails

    def refused(self, why, suffix='the domain was left as it was'):
        self.refusal = why
        self.report.error = '%s; %s' % (why, suffix)
        self.report.restored_unchanged = True
        return self.report

    def _settled(self):
        """(a new connection, the domain on it) once libvirt's own job on the domain has ended. The
        connection the operation failed on may be gone, with libvirt still carrying the operation out
        (a client disconnected in the middle of a save does not stop it): the checks use another one."""
        other = self.client.another()
        try:
            dom = other.lookup_uuid(self.uuid)
            if not other.wait_for_no_job(dom, SAVE_JOB_TIMEOUT):
                raise KvmioError('libvirt is still busy with domain %s after %d s' % (self.name, SAVE_JOB_TIMEOUT))
        except KvmioError:
            other.close()
            raise
        return other, dom

    def after_failed_save(self, err):
        """The save call failed: libvirt may still have saved the domain (a lost connection), or it gave
        up and left the domain as it was. Never remove the image before the domain is seen running."""
        other = None
        try:
            other, dom = self._settled()
            if other.is_active(dom):
                self.resume(other, dom)
                _remove(self.path, self.run_dir)
                return self.refused(err.msg)
            if not os.path.exists(self.path):
                _remove(self.path, self.run_dir)
                raise DomainNotRunning('domain %s stopped during its save (no save image was written): nothing was '
                                       'applied live' % self.name, domain=self.name)
            # The save completed although the call failed: the unchanged image is the guest.
            other.restore(self.path)
            self.report.saved = True
            self.stopped()
            _remove(self.path, self.run_dir)
            return self.refused(err.msg, 'the save completed nevertheless, and the domain was restored unchanged')
        except DomainNotRunning:
            raise
        except KvmioError as check_err:
            if os.path.exists(self.path):
                raise _kept(self.name, self.path, '%s; then: %s' % (err.msg, check_err.msg)) from None
            raise ApplyError('the save of domain %s failed (%s) and its state cannot be read (%s): check it with '
                             'virsh domstate %s' % (self.name, err.msg, check_err.msg, self.name),
                             domain=self.name) from None
        finally:
            if other is not None:
                other.close()

    def restore(self, original, changed):
        """Restores the image (with its new XML when ``changed``); the original XML when that fails."""
        try:
            self.client.restore(self.path)
            return
        except KvmioError as err:
            failure = err
        # Did libvirt restore it all the same (a lost connection)? Asked on another connection.
        other = None
        try:
            other, dom = self._settled()
            if other.is_active(dom):
                self.report.error = '%s (libvirt restored the domain all the same)' % failure.msg
                return
            # The domain is shut off: the new XML did not start, or the restore never reached libvirt (the
            # connection was lost after the save). The image, with its original XML, is tried once more on
            # the new connection; if that fails too, the image is kept and the message says how to restore it.
            if changed:
                other.save_image_define(self.path, original)
            why = failure.msg if self.refusal is None else '%s; then: %s' % (self.refusal, failure.msg)
            self.refused(why, 'the domain was restored unchanged')
            other.restore(self.path)
        except ApplyError:
            raise
        except KvmioError as err:
            raise _kept(self.name, self.path, '%s; then: %s' % (failure.msg, err.msg)) from None
        finally:
            if other is not None:
                other.close()

    def run(self, new_xml, while_paused):
        report = self.report
        try:
            running = self.pause()
        except KvmioError as err:
            self.start = time.monotonic()
            return self.refused(err.msg, 'nothing was changed')
        try:
            if while_paused is not None:
                while_paused()
            self.run_dir = tempfile.mkdtemp(prefix='kvmio-save-', dir=self.save_dir)
        except Exception as err:    # pylint: disable=broad-except  # nothing saved yet: the guest runs on unchanged
            if self.run_dir:
                os.rmdir(self.run_dir)
            if not self.still_active():
                raise DomainNotRunning('domain %s stopped before its save (%s): nothing was applied live'
                                       % (self.name, _why(err)), domain=self.name) from None
            self.resume()
            return self.refused(_why(err))
        self.path = os.path.join(self.run_dir, 'domain.save')
        try:
            self.client.save(self.dom, self.path, running=running)
        except KvmioError as err:
            return self.after_failed_save(err)
        saved = time.monotonic()
        report.saved = True
        report.save_seconds = saved - self.start
        original, changed = None, False
        try:
            report.image_bytes = os.path.getsize(self.path)
            original = self.client.save_image_xml(self.path)
            # save-image-define leaves the image as it was when it refuses.
            self.client.save_image_define(self.path, new_xml(original))
            changed = True
        except Exception as err:    # pylint: disable=broad-except  # any failure here: restore it unchanged
            self.refused(_why(err), 'the domain was restored unchanged')
        defined = time.monotonic()
        report.define_seconds = defined - saved
        try:
            self.restore(original, changed)
        except Exception as err:    # pylint: disable=broad-except  # the guest is off: never leave silently
            if isinstance(err, ApplyError):
                raise
            raise _kept(self.name, self.path, _why(err)) from None
        report.restore_seconds = time.monotonic() - defined
        self.stopped()
        _remove(self.path, self.run_dir)
        return report


def save_define_restore(client, dom, save_dir, new_xml, while_paused=None):
    """Pauses ``dom``, calls ``while_paused()``, saves it, gives its image the XML ``new_xml(image_xml)``
    returns, restores it (running again if it ran before).

    Returns a PauseReport; ``restored_unchanged`` and ``error`` say when the change was refused and the
    guest is back as it was (``while_paused`` raising refuses it before anything is saved). Raises
    DomainNotRunning when someone else stopped the domain meanwhile, and ApplyError when the guest could
    not be restored at all (its image is then kept, and the message says how to restore it) or stays
    paused.
    """
    return _Pause(client, dom, save_dir).run(new_xml, while_paused)
