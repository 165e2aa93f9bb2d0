# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""qcow2_create's flow: read the image (qemu-img info/map), plan (pure, ``_image_plan``), apply.

Every write goes to a temporary file beside the image (``.NAME.kvmio-PID.tmp``) and reaches the
image's name by a link (create: fails rather than overwrite) or an atomic rename (convert, after
``qemu-img compare`` and a hard-link backup of the original). A temporary file left by a killed run
is removed by the next one.
"""

from __future__ import annotations

import datetime
import errno
import glob
import os
import stat

from ._disk_xml import local_source_paths
from ._domain_xml import parse_domain
from ._errors import ApplyError, KvmioError, LibvirtUnavailable, PlanError
from ._image_plan import PREALLOCATION_CHOICES, WantedImage, human_size, image_facts, parse_size, plan_image, \
    validate_wanted
from ._libvirt import LIBVIRT_ARGUMENT_SPEC, LibvirtClient
from ._lock import LOCK_ARGUMENT_SPEC, HostLock
from ._qemu_img import QemuImg, module_runner
from ._storage_probe import StorageProber


def argument_spec():
    spec = dict(LIBVIRT_ARGUMENT_SPEC)
    spec.update({
        'path': {'type': 'path', 'required': True},
        'state': {'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
        'size': {'type': 'str'},
        'preallocation': {'type': 'str', 'choices': list(PREALLOCATION_CHOICES), 'default': 'metadata'},
        'cluster_size': {'type': 'str'},
        'lazy_refcounts': {'type': 'bool', 'default': False},
        'extended_l2': {'type': 'bool', 'default': False},
        'compat': {'type': 'str', 'choices': ['0.10', '1.1'], 'default': '1.1'},
        'backing_file': {'type': 'str'},
        'backing_format': {'type': 'str', 'default': 'qcow2'},
        'resize': {'type': 'str', 'choices': ['keep', 'grow'], 'default': 'keep'},
        'convert': {'type': 'bool', 'default': False},
        'force': {'type': 'bool', 'default': False},
        'allowed_roots': {'type': 'list', 'elements': 'path', 'default': []},
    })
    spec.update(LOCK_ARGUMENT_SPEC)
    return spec


def temp_name(path, pid=None):
    return os.path.join(os.path.dirname(path), '.%s.kvmio-%d.tmp' % (os.path.basename(path), pid or os.getpid()))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM
    return True


def remove_stale_temporaries(path):
    """Temporary files of runs that died (SIGKILL, power loss); a live run's file is left alone."""
    removed = []
    pattern = os.path.join(glob.escape(os.path.dirname(path)), '.%s.kvmio-*.tmp' % glob.escape(os.path.basename(path)))
    for tmp in glob.glob(pattern):
        try:
            pid = int(tmp.rsplit('.kvmio-', 1)[1][:-len('.tmp')])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            os.unlink(tmp)
            removed.append(tmp)
    return removed


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


class Qcow2Run:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.qemu_img = QemuImg(module_runner(module))
        self.path = os.path.abspath(self.params['path'])
        self.result = {'changed': False, 'path': self.path, 'action': 'none', 'drift': {}, 'backup_file': None,
                       'cleaned': []}

    # --- reading ----------------------------------------------------------------------------

    def _current_facts(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise KvmioError('cannot stat %s: %s' % (self.path, err.strerror)) from None
        if stat.S_ISDIR(st.st_mode):
            raise PlanError('%s is a directory, not an image file' % self.path)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise PlanError('%s is not a regular file or block device, so not an image' % self.path)
        info = self.qemu_img.info(self.path)
        extents = self.qemu_img.map(self.path) if info.get('format') == 'qcow2' else None
        return image_facts(info, extents)

    def _wanted(self):
        params = self.params
        size = parse_size(params['size'], 'size') if params['size'] else None
        cluster = parse_size(params['cluster_size'], 'cluster_size') if params['cluster_size'] else None
        wanted = WantedImage(size=size, preallocation=params['preallocation'], cluster_size=cluster,
                             lazy_refcounts=params['lazy_refcounts'], extended_l2=params['extended_l2'],
                             compat=params['compat'], backing_file=params['backing_file'],
                             backing_format=params['backing_format'] if params['backing_file'] else None)
        validate_wanted(wanted, self.qemu_img.version())
        return wanted

    def _users(self, active_only):
        """Domains (by name) whose disks use this image, through libvirt; raises LibvirtUnavailable."""
        real = os.path.realpath(self.path)
        users = []
        with LibvirtClient(self.params['uri']) as client:
            for dom in client.all_domains():
                active = client.is_active(dom)
                if active_only and not active:
                    continue
                xml = client.live_xml(dom) if active else client.inactive_xml(dom)
                paths = local_source_paths(parse_domain(xml, 'the XML of domain %s' % dom.name()))
                if any(os.path.realpath(p) == real for p in paths):
                    users.append(dom.name())
        return sorted(users)

    def _refuse_if_in_use(self, doing):
        holder = self.qemu_img.lock_holder_error(self.path)
        if not holder:
            return
        try:
            users = self._users(active_only=True)
        except LibvirtUnavailable:
            users = []
        who = ('running domain %s' % ', '.join(users)) if users else 'another process'
        raise PlanError('%s is in use by %s (QEMU holds its write lock), so it is not %s; shut the domain down '
                        'first' % (self.path, who, doing), qemu_img=holder, users=users)

    # --- the run ----------------------------------------------------------------------------

    def run(self):
        with HostLock(os.path.realpath(self.path), self.params['lock_timeout']):
            return self._run()

    def _check_allowed_roots(self):
        roots = [os.path.realpath(r) for r in self.params['allowed_roots']]
        if not roots:
            return
        real = os.path.realpath(self.path)       # symlinks out of a root count as outside
        if not any(real == r or real.startswith(r.rstrip('/') + '/') for r in roots):
            raise PlanError('%s (resolving to %s) is outside allowed_roots (%s); nothing was done'
                            % (self.path, real, ', '.join(roots)))

    def _run(self):
        self._check_allowed_roots()
        if os.path.isdir(self.path):
            raise PlanError('%s is a directory, not an image file' % self.path)
        if not self.module.check_mode:
            self.result['cleaned'] = remove_stale_temporaries(self.path)
        before = self._current_facts()
        if self.params['state'] == 'absent':
            return self._absent(before)
        wanted = self._wanted()
        plan = plan_image(self.path, before, wanted, self.params['resize'], self.params['convert'])
        self.result['drift'] = {k: {'have': v[0], 'want': v[1]} for k, v in plan.drift.items()}
        self.result['action'] = plan.action
        if plan.action == 'drift':
            fields = ', '.join(sorted(plan.drift))
            self.module.warn('%s differs from the request in %s: %s' % (self.path, fields, plan.reason))
        if plan.action in ('grow', 'convert'):
            self._refuse_if_in_use('converted' if plan.action == 'convert' else 'resized')
        after_plan = self._planned_facts(before, wanted, plan.action)
        if plan.action in ('create', 'grow', 'convert'):
            self.result['changed'] = True
            if not self.module.check_mode:
                getattr(self, '_' + plan.action)(before, wanted)
        after = self._current_facts() if not self.module.check_mode and os.path.exists(self.path) else after_plan
        if not self.module.check_mode and os.path.exists(self.path):
            file_args = self.module.load_file_common_arguments(self.module.params, path=self.path)
            self.result['changed'] = self.module.set_fs_attributes_if_different(file_args, self.result['changed'])
        return self._finish(before, after)

    def _planned_facts(self, before, wanted, action):
        if action == 'none' or action == 'drift':
            return before
        planned = dict(before or {})
        planned.update({'format': 'qcow2', 'virtual_size': wanted.size or (before or {}).get('virtual_size')})
        if action in ('create', 'convert'):
            planned.update({'compat': wanted.compat, 'lazy_refcounts': wanted.lazy_refcounts,
                            'extended_l2': wanted.extended_l2, 'preallocation': wanted.preallocation,
                            'actual_size': None})
            if wanted.cluster_size or action == 'create':
                planned['cluster_size'] = wanted.cluster_size or 65536
            if wanted.backing_file or action == 'create':
                planned['backing_file'] = wanted.backing_file
                planned['backing_format'] = wanted.backing_format
        return planned

    def _create(self, _before, wanted):
        tmp = temp_name(self.path)
        try:
            self.qemu_img.create(tmp, wanted.size, 'qcow2', wanted.create_options(), wanted.backing_file,
                                 wanted.backing_format)
            os.chmod(tmp, 0o600)
            os.link(tmp, self.path)      # fails instead of replacing a file that appeared meanwhile
        except FileExistsError:
            raise ApplyError('%s appeared while this run created it; left it alone' % self.path) from None
        except OSError as err:
            raise ApplyError('cannot create %s: %s' % (self.path, err.strerror)) from None
        finally:
            _unlink_quietly(tmp)
        self.result['action'] = 'created'

    def _grow(self, _before, wanted):
        prealloc = wanted.preallocation if wanted.preallocation != 'off' else None
        self.qemu_img.resize(self.path, wanted.size, prealloc)
        self.result['action'] = 'grown'

    def _convert(self, before, wanted):
        tmp = temp_name(self.path)
        backing = wanted.backing_file or before.get('backing_file')
        backing_format = wanted.backing_format if wanted.backing_file else before.get('backing_format')
        options = wanted.create_options()
        if backing and not wanted.extended_l2:
            options['preallocation'] = 'off'    # QEMU refuses preallocation over a backing file without it
        try:
            self.qemu_img.convert(self.path, before['format'], tmp, options, backing, backing_format)
            if not self.qemu_img.compare(self.path, tmp, before['format']):
                raise ApplyError('the converted copy of %s does not show the same content; the original is '
                                 'unchanged' % self.path)
            st = os.stat(self.path)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
            backup = '%s.%s.orig' % (self.path, datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ'))
            os.link(self.path, backup)      # the original stays whole under this name
            os.replace(tmp, self.path)
        except OSError as err:
            raise ApplyError('cannot convert %s: %s; the original is unchanged' % (self.path, err.strerror)) from None
        finally:
            _unlink_quietly(tmp)
        if wanted.size and wanted.size > (before.get('virtual_size') or 0) and self.params['resize'] == 'grow':
            self._grow(before, wanted)
        self.result['backup_file'] = backup
        self.result['action'] = 'converted'

    def _absent(self, before):
        if before is None:
            return self._finish(None, None)
        self._refuse_if_in_use('removed')
        if not self.params['force']:
            try:
                users = self._users(active_only=False)
            except LibvirtUnavailable as err:
                raise PlanError('cannot check whether a domain uses %s (%s); set force=true to remove it anyway'
                                % (self.path, err.msg)) from None
            if users:
                raise PlanError('%s is a disk of domain %s; remove it from the domain first, or set force=true'
                                % (self.path, ', '.join(users)), users=users)
        self.result.update(changed=True, action='removed')
        if not self.module.check_mode:
            os.unlink(self.path)
        return self._finish(before, None)

    def _finish(self, before, after):
        self.result['image'] = after
        if after is not None and os.path.exists(self.path):
            facts = StorageProber().facts(self.path)
            self.result['filesystem'] = {'type': facts.fstype, 'mountpoint': facts.mountpoint,
                                         'odirect': facts.odirect, 'shared': facts.shared}
        if self.module._diff:
            self.result['diff'] = {'before': before or {}, 'after': after or {},
                                   'before_header': '%s (qemu-img info)' % self.path,
                                   'after_header': '%s (qemu-img info)' % self.path}
        if after and after.get('virtual_size'):
            self.result['size'] = human_size(after['virtual_size'])
        return self.result
