# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Reading what a running QEMU really runs, and bringing it to the persistent disk settings.

``_live_plan`` and ``_blockdev`` decide; this file reads the live XML and QEMU's block nodes through
the libvirt client, and carries out a decision: one ``blockdev-reopen`` per disk chain, each checked
on QEMU's nodes afterwards, or one pause -> save -> save-image-define -> restore per domain
(``_save_image``), checked on the new QEMU. kvm_disk_tune (``apply``) and kvm_io_info (``read_qemu``)
use it.

QEMU's monitor is used only where needed: every QMP command makes libvirt taint the domain
(custom-monitor) for the life of its QEMU process. A domain without that taint runs exactly its live
XML, so it is read from there: check mode, the audit (``read_qemu=auto``) and a run refused because
of a block job or a migration never send a command to it.

Which QEMU process a record of a reopen belongs to: the live XML's domain id, and the name of an inert
QOM object (``authz-simple``, id ``kvmio-live-<random>``) the module adds to that process before its
first reopen. A restore, a migration or a restart builds a new process from the XML, without the
object, even when the domain id and the thread ids repeat (the embedded driver counts ids from 1 in
every process).
"""

from __future__ import annotations

import os
import stat
import threading
import time
import uuid
from dataclasses import replace

from ._blockdev import chain_mismatch, device_states, disk_chain, node_states, reopen_options
from ._disk_policy import Guards
from ._disk_xml import disk_info
from ._domain_xml import parse_domain
from ._errors import ApplyError, KvmioError
from ._live_plan import (METHOD_LABELS, RECORD_NAMESPACE, broken_live_rules, choose_method, driver_settings,
                         live_iothreads, memory_bytes, merged_discards, observed, pair_disks, plan_reopen, plan_restore,
                         record_is_current, record_of, record_xml, recorded_discards, refused_by_rule, restore_xml,
                         running_from_live_xml, running_from_qemu, undone, unpaired_outcome, verify)
from ._save_image import (DomainNotRunning, check_free_space, check_save_dir, private_directory,
                          save_define_restore)
from ._support import HostSupport

TAINT = 'custom-monitor'
READ_QEMU_CHOICES = ('auto', 'always', 'never')
_TAINT_WORDS = ('custom monitor', 'custom-monitor')
# The object that names a QEMU process: inert (it authorizes nothing unless a TLS or VNC server names
# it), not migrated, gone with the process.
PROCESS_OBJECT_PREFIX = 'kvmio-live-'
PROCESS_OBJECT_TYPE = 'authz-simple'
# The host's write-back of a chain before its reopen (see write_back).
SYNC_PASSES = 3
SYNC_SETTLED_SECONDS = 0.05
SYNC_TIMEOUT_SECONDS = 120
SYNC_WARN_SECONDS = 0.5
WHY_SYNC_TIMEOUT = ('the host did not write back the cached data of its images within %d s; a reopen flushes it '
                    'while the guest is stopped, so it is left as it runs')


def _tainted(messages):
    return any(word in message for message in messages for word in _TAINT_WORDS)


def not_running_result(message, predicted):
    return {'status': 'not_running', 'method': None, 'predicted': predicted, 'read_from': None, 'taint': None,
            'disks': [], 'pending': [], 'pause': None, 'error': message, 'write_cache_kept': []}


class RunningDomain:
    """One running domain as read now: its live XML and, once ``read_qemu`` ran, QEMU's nodes.
    Raises DomainNotRunning when the domain is not running (it stopped after the run listed it)."""

    def __init__(self, client, dom):
        self.client = client
        self.dom = dom
        self.name = dom.name()
        self.live_text = client.live_xml(dom)
        self.live_root = parse_domain(self.live_text, 'the live XML of domain %s' % self.name)
        # The XML of an inactive domain has no id: it is the persistent one, not what QEMU runs.
        self.domain_id = self.live_root.get('id')
        if not self.domain_id or not client.is_active(dom):
            raise DomainNotRunning('domain %s is not running (it stopped, or was saved, after this run listed it): '
                                   'nothing was applied live' % self.name, domain=self.name)
        self.nodes = None
        self.devices = None
        self.process = None
        self.monitor_used = False

    def qmp(self, command, **arguments):
        self.monitor_used = True
        return self.client.qmp(self.dom, command, **arguments)

    def may_differ_from_live_xml(self):
        """Whether QEMU may run what its live XML does not say: libvirt reports the custom-monitor taint
        (someone, this module included, used its monitor). A libvirt that cannot report taints (< 7.1)
        leaves the live-apply record: one naming the running domain id."""
        messages = self.client.taint_messages(self.dom)
        if messages is None:
            return record_is_current(self.live_root)
        return _tainted(messages)

    def read_qemu(self):
        self.nodes = node_states(self.qmp('query-named-block-nodes', flat=True))
        self.devices = device_states(self.qmp('query-block'))
        names = sorted(o.get('name', '') for o in self.qmp('qom-list', path='/objects') or []
                       if o.get('name', '').startswith(PROCESS_OBJECT_PREFIX))
        record = record_of(self.live_root)
        if record is not None and record[1] in names:
            self.process = record[1]
        else:
            self.process = names[0] if names else None

    def mark_process(self):
        """The name of this QEMU process, given to it now if it has none (see the module doc)."""
        if self.process is None:
            name = PROCESS_OBJECT_PREFIX + uuid.uuid4().hex
            self.qmp('object-add', **{'qom-type': PROCESS_OBJECT_TYPE, 'id': name, 'identity': 'kvmio.tuning'})
            self.process = name
        return self.process

    def taint(self):
        """'custom-monitor' when libvirt marks the running QEMU process so (or this run used its monitor)."""
        if self.monitor_used:
            return TAINT
        return TAINT if _tainted(self.client.taint_messages(self.dom) or []) else None

    def targets(self):
        """(live <disk>, target, alias) of every disk with a target."""
        for disk in self.live_root.findall('devices/disk'):
            target, alias = disk.find('target'), disk.find('alias')
            if target is not None and target.get('dev'):
                yield disk, target.get('dev'), alias.get('name') if alias is not None else None

    def write_caches(self, devices=None):
        """{target: bool} the write cache each guest device runs with (query-block; ``devices`` already read)."""
        devices = device_states(self.qmp('query-block')) if devices is None else devices
        caches = {}
        for _disk, target, alias in self.targets():
            device = _device_of(devices, alias)
            if device is not None:
                caches[target] = device.write_cache
        return caches

    def known_write_caches(self):
        """The write caches as far as known without asking QEMU: query-block if it was read, else each
        disk's cache mode in the live XML (what QEMU started with; a guest may have changed it since)."""
        if self.devices is not None:
            return self.write_caches(self.devices)
        return {target: running_from_live_xml(target, driver_settings(disk)).write_cache
                for disk, target, _alias in self.targets()}

    def running(self, live_disk):
        """(DiskChain, RunningDisk, why a reopen cannot touch the disk or '') of a live ``<disk>``."""
        chain = disk_chain(live_disk)
        settings = driver_settings(live_disk)
        refused = chain.problem
        if self.nodes is not None and not refused:
            refused = chain_mismatch(chain, self.nodes, self.devices)
            if not refused:
                recorded = recorded_discards(self.live_root, self.domain_id, self.process).get(chain.top.format_node)
                return chain, running_from_qemu(chain, settings, self.nodes, self.devices, recorded), ''
        running = running_from_live_xml(chain.target, settings)
        device = _device_of(self.devices, chain.alias)
        if device is not None:
            running = replace(running, guest_write_cache=device.write_cache)
        return chain, running, refused


def _device_of(devices, alias):
    for device in (devices or {}).values():
        if alias and (device.qdev == alias or device.qdev.startswith('/machine/peripheral/%s/' % alias)):
            return device
    return None


def running_disks(client, dom, read_qemu='auto'):
    """{target: (live driver settings, RunningDisk)} of a running domain, for an audit. QMP only with
    ``read_qemu=always``, or ``auto`` for a domain libvirt marks custom-monitor."""
    domain = RunningDomain(client, dom)
    if read_qemu == 'always' or (read_qemu == 'auto' and domain.may_differ_from_live_xml()):
        domain.read_qemu()
    disks = {}
    for disk in domain.live_root.findall('devices/disk'):
        if disk.find('target') is None:
            continue
        _chain, running, _refused = domain.running(disk)
        disks[running.target] = (driver_settings(disk), running)
    return domain, disks


# --- the host's page cache before a reopen ----------------------------------------------------------

def _sync_file(path):
    """fdatasync of one image through a read-only descriptor of the host's: writes back the page cache
    QEMU filled through its own. Regular files and block devices only (opening anything else can have
    side effects); an image that cannot be opened is left to the reopen."""
    try:
        if not (stat.S_ISREG(os.stat(path).st_mode) or stat.S_ISBLK(os.stat(path).st_mode)):
            return
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode) or stat.S_ISBLK(mode):
            os.fdatasync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_back(paths, timeout=SYNC_TIMEOUT_SECONDS):
    """Writes back the host's cached data of ``paths`` before their reopen: the reopen flushes them
    itself while the disk's I/O is drained and QEMU's global lock is held, so every vCPU of the guest
    waits for that flush (about a second per GiB of dirty page cache here). Repeats while a pass takes
    long (the guest keeps writing), at most SYNC_PASSES times.

    Returns (seconds, seconds of the last pass or None, whether it finished within ``timeout``); a
    write-back that does not finish (a hung NFS server) goes on in a thread and the reopen is skipped."""
    times = {}

    def run():
        start = time.monotonic()
        for _pass in range(SYNC_PASSES):
            began = time.monotonic()
            for path in paths:
                _sync_file(path)
            times.update(total=time.monotonic() - start, last=time.monotonic() - began)
            if times['last'] < SYNC_SETTLED_SECONDS:
                break

    start = time.monotonic()
    thread = threading.Thread(target=run, name='kvmio-write-back', daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return time.monotonic() - start, None, False
    return times.get('total', 0.0), times.get('last', 0.0), True


# --- applying --------------------------------------------------------------------------------------

class LiveApply:
    """Applies persistent disk settings to running domains; ``apply`` may run for several domains at once.

    ``host`` (HostSupport) and ``storage(path, format)`` (probe facts or None) feed the rule table
    that every live target is checked against."""

    def __init__(self, client, check_mode, allow_pause, save_dir, warn, host=None, storage=None):
        self.client = client
        self.check_mode = check_mode
        self.allow_pause = allow_pause
        self.save_dir = save_dir
        self.warn = warn
        self.host = host or HostSupport()
        self.storage = storage
        # Domains are applied several at a time (see _parallel); saves go one at a time: each takes the
        # guest's memory in disk space and I/O.
        self._one_save_at_a_time = threading.Lock()

    def apply(self, dom, config_xml, config_only_changes=(), tuned=None, guards=Guards()):
        """Brings one running domain to ``config_xml``'s disk settings, for the settings ``tuned``
        ({target: settings}, None: every setting of every disk) and under ``guards``. Returns its
        result dict and the Change records done (or, in check mode, that would be done). A domain that
        is not running, or stops meanwhile, gets status ``not_running``."""
        try:
            domain = RunningDomain(self.client, dom)
        except DomainNotRunning as err:
            return not_running_result(err.msg, self.check_mode), []
        request = _Request(parse_domain(config_xml, 'the XML of domain %s' % domain.name), config_only_changes,
                           tuned, guards)
        try:
            return self._apply(domain, request)
        except DomainNotRunning as err:
            return not_running_result(err.msg, self.check_mode), []
        except KvmioError as err:
            if self._stopped(dom):
                return not_running_result('domain %s stopped during this run (%s): what was applied live went with '
                                          'its QEMU process' % (domain.name, err.msg), self.check_mode), []
            raise

    def _stopped(self, dom):
        try:
            return not self.client.is_active(dom)
        except KvmioError:
            return False

    def _apply(self, domain, request):
        if domain.may_differ_from_live_xml():
            domain.read_qemu()              # already tainted: reading costs nothing more
        plan, disks = self._plan(domain, request)
        if plan.method:
            # Before any command to a domain that has no taint yet: a refused run leaves none.
            busy = self._busy(domain, plan)
            if not busy and not self.check_mode and domain.nodes is None:
                domain.read_qemu()          # act on QEMU's real state, not on the live XML's
                plan, disks = self._plan(domain, request)
                busy = self._busy(domain, plan) if plan.method else ''
            if busy:
                plan, disks = self._plan(domain, request, refused=busy)
        report = {}
        if plan.method == 'restore':
            if self.check_mode:
                plan, report = self._predict_restore(domain, plan, request)
            else:
                with self._one_save_at_a_time:
                    plan, report, domain = self._restore(domain, plan, request)
        if plan.method == 'reopen' and not self.check_mode:
            self._reopen(domain, plan, disks)
        if plan.no_pause and not report.get('error'):
            report['error'] = plan.no_pause
        return self._result(domain, plan, report), plan.changes

    # --- deciding -----------------------------------------------------------------------------

    def _plan(self, domain, request, refused='', allow_pause=None):
        tuned = request.tuned
        pairs = pair_disks(request.config_root, domain.live_root, None if tuned is None else set(tuned))
        targets = {pair.target for pair in pairs}
        pending = [{'setting': c.setting, 'device': c.device, 'running': c.before, 'wanted': c.after,
                    'why': 'applies at the next boot'} for c in request.later if c.device not in targets]
        iothreads = live_iothreads(domain.live_root)
        devices = domain.live_root.find('devices')
        reopens, restores, disks = [], [], {}
        for pair in pairs:
            if pair.live is None:
                reopens.append(unpaired_outcome(pair))
                restores.append(unpaired_outcome(pair))
                continue
            chain, running, why = domain.running(pair.live)
            live_settings = driver_settings(pair.live)
            disks[pair.target] = (chain, live_settings)
            settings = None if tuned is None else tuned[pair.target]
            info = disk_info(pair.live, None, devices)

            def reopen(with_settings, chain_why=refused or why, pair=pair, running=running, live=live_settings):
                return plan_reopen(pair.target, pair.wanted, running, live, chain_why, with_settings)

            def restore(with_settings, pair=pair, running=running, live=live_settings):
                return plan_restore(pair.target, pair.wanted, running, iothreads, live, with_settings)

            reopens.append(self._guarded(info, reopen(settings), lambda f=reopen: f(frozenset()), request.guards))
            restores.append(self._guarded(info, restore(settings), lambda f=restore: f(frozenset()), request.guards))
        pause = self.allow_pause if allow_pause is None else allow_pause
        plan = choose_method(domain.name, reopens, restores, pause and not refused, pending)
        return plan, disks

    def _guarded(self, info, outcome, kept, guards):
        """``outcome``, unless the running disk would then break a rule of the policy's table."""
        storage = self.storage(info.path, info.image_format) if (self.storage and info.path) else None
        broken = broken_live_rules(info, outcome, storage, self.host, guards)
        if not broken:
            return outcome
        return refused_by_rule(outcome, kept(), '%s: %s' % (info.label, '; '.join(broken)))

    def _busy(self, domain, plan):
        """Why nothing may change now (a migration, a save, a backup, a block job), or ''."""
        job = self.client.job_in_progress(domain.dom)
        if job:
            return 'a %s job is in progress on the domain: nothing is changed under it' % job
        for outcome in plan.disks:
            affected = outcome.changes or plan.method == 'restore'     # a save stops every disk
            block = self.client.block_job(domain.dom, outcome.target) if affected and outcome.before else {}
            if block:
                return 'a block job is in progress on disk %s: nothing is changed under it' % outcome.target
        return ''

    # --- blockdev-reopen -------------------------------------------------------------------------

    def _reopen(self, domain, plan, disks):
        discards = {}
        process = None
        for position, outcome in enumerate(plan.disks):
            if outcome.method != 'reopen':
                continue
            chain, live_settings = disks[outcome.target]
            options = reopen_options(chain, outcome.driver)
            if process is None:
                try:
                    process = domain.mark_process()
                except KvmioError as err:
                    process = ''
                    self.warn('%s: cannot name its QEMU process (%s): the discard a reopen sets is not recorded, and '
                              'the next run applies it again' % (domain.name, err.msg))
            seconds, last_pass, done = write_back([image.path for image in chain.images])
            outcome.host_sync_seconds = seconds
            if not done:
                why = WHY_SYNC_TIMEOUT % SYNC_TIMEOUT_SECONDS
                plan.disks[position] = undone(outcome, why)
                self.warn('%s: disk %s: %s' % (domain.name, outcome.target, why))
                continue
            if last_pass > SYNC_WARN_SECONDS:
                self.warn('%s: disk %s: the guest writes faster than the host writes its data back (the last pass '
                          'took %.1f s): the reopen may stop the guest about as long while it flushes'
                          % (domain.name, outcome.target, last_pass))
            start = time.monotonic()
            try:
                domain.qmp('blockdev-reopen', options=options)
            except KvmioError as err:
                if self._stopped(domain.dom):
                    raise DomainNotRunning('domain %s stopped during this run (%s): what was applied live went with '
                                           'its QEMU process' % (domain.name, err.msg), domain=domain.name) from None
                # blockdev-reopen is atomic: a refused one changed nothing.
                plan.disks[position] = undone(outcome, err.msg)
                self.warn('%s: disk %s: %s; left as it runs' % (domain.name, outcome.target, err.msg))
                continue
            outcome.seconds = time.monotonic() - start
            nodes = node_states(domain.qmp('query-named-block-nodes', flat=True))
            now = running_from_qemu(chain, live_settings, nodes, domain.devices, outcome.expected.discard)
            discards[chain.top.format_node] = outcome.expected.discard
            problems = verify(outcome, now)
            if problems:
                plan.disks[position] = observed(outcome, now, problems, 'QEMU reports after the reopen')
                self.warn('%s: disk %s: %s' % (domain.name, outcome.target, plan.disks[position].error))
        if discards and process:
            merged = merged_discards(domain.live_root, domain.domain_id, process, discards)
            try:
                self.client.set_live_metadata(domain.dom, record_xml(domain.domain_id, process, merged), 'kvmio',
                                              RECORD_NAMESPACE)
            except KvmioError as err:
                self.warn('%s: cannot record the discard set live (%s): QEMU does not report it, so the next run '
                          'applies it again' % (domain.name, err.msg))

    # --- pause -> save -> save-image-define -> restore -------------------------------------------

    def _without_pause(self, domain, plan, request, why):
        self.warn('%s: no save/restore (%s); applying what a reopen can' % (domain.name, why))
        plan, _disks = self._plan(domain, request, allow_pause=False)
        return plan, {'error': why}

    def _predict_restore(self, domain, plan, request):
        """Check mode: what a real run would refuse before pausing, checked without creating anything."""
        try:
            check_save_dir(self.save_dir, memory_bytes(domain.live_root), domain.name)
            restore_xml(domain.live_text, plan.disks, domain.known_write_caches())
        except KvmioError as err:
            return self._without_pause(domain, plan, request, err.msg)
        return plan, {}

    def _restore(self, domain, plan, request):
        # The wait for the save lock can be long: the domain may have stopped meanwhile, or a job begun.
        if not self.client.is_active(domain.dom):
            raise DomainNotRunning('domain %s stopped during this run: nothing was applied live' % domain.name,
                                   domain=domain.name)
        busy = self._busy(domain, plan)
        if busy:
            plan, _disks = self._plan(domain, request, refused=busy)
            return plan, {}, domain
        try:
            save_dir = private_directory(self.save_dir)
            check_free_space(save_dir, memory_bytes(domain.live_root), domain.name)
            # A plan that would turn a guest's write cache on stops here, before the guest is paused.
            restore_xml(domain.live_text, plan.disks, domain.known_write_caches())
        except KvmioError as err:
            plan, report = self._without_pause(domain, plan, request, err.msg)
            return plan, report, domain
        caches, kept = {}, []

        def while_paused():
            # The guest's vCPUs are stopped: the write caches read now are the ones the save image holds.
            caches.update(domain.write_caches())
            restore_xml(domain.live_text, plan.disks, caches)

        def new_xml(image_xml):
            text, adjusted = restore_xml(image_xml, plan.disks, caches, 'the save image XML of domain %s' % domain.name)
            kept[:] = adjusted
            return text

        pause = save_define_restore(self.client, domain.dom, save_dir, new_xml, while_paused)
        report = {'pause': pause.as_dict()}
        if pause.restored_unchanged:
            if not pause.saved:
                report['pause'] = pause.as_dict() if pause.pause_seconds else None
                plan, more = self._without_pause(domain, plan, request, pause.error)
                report['error'] = more['error']
                return plan, report, domain
            self.warn('%s: save/restore with the new settings failed (%s)' % (domain.name, pause.error))
            plan.disks = [undone(o, pause.error) if o.changes else o for o in plan.disks]
            plan.method = None
            report['error'] = pause.error
            return plan, report, self._reread(domain)
        report['write_cache_kept'] = kept
        if not pause.error:
            return plan, report, self._verify_restore(domain, plan, caches, report)
        # libvirt restored the domain with its new XML although the call failed (this connection was lost):
        # the check of the new QEMU may fail the same way; then the message says what was done.
        report['error'] = pause.error
        try:
            return plan, report, self._verify_restore(domain, plan, caches, report)
        except KvmioError as err:
            raise ApplyError('domain %s runs again, restored with the new settings, but they could not be checked '
                             '(%s; then: %s): check them with virsh dumpxml %s'
                             % (domain.name, pause.error, err.msg, domain.name), domain=domain.name) from None

    def _reread(self, domain):
        try:
            return RunningDomain(self.client, domain.dom)
        except KvmioError:
            return domain

    def _verify_restore(self, domain, plan, caches, report):
        """Reads the new QEMU process (this marks it custom-monitor): each restored disk's nodes, and the
        write cache of every guest device, which must be the one it ran with before the save."""
        restored = RunningDomain(self.client, domain.dom)
        restored.read_qemu()
        live = {target: disk for disk, target, _alias in restored.targets()}
        for position, outcome in enumerate(plan.disks):
            if not outcome.changes or outcome.target not in live:
                continue
            _chain, now, why = restored.running(live[outcome.target])
            problems = [why] if why else verify(outcome, now)
            if problems:
                plan.disks[position] = observed(outcome, now, problems, 'QEMU runs after the restore')
                self.warn('%s: disk %s: %s' % (domain.name, outcome.target, plan.disks[position].error))
        now = restored.write_caches(restored.devices)
        turned = sorted(t for t, on in caches.items() if t in now and now[t] != on)
        if turned:
            message = ("the write cache of disk %s changed at the restore (QEMU reports %s): the guest does not know; "
                       "restart the domain" % (', '.join(turned), ', '.join('%s=%s' % (t, now[t]) for t in turned)))
            report['error'] = message
            self.warn('%s: %s' % (domain.name, message))
        return restored

    # --- result ---------------------------------------------------------------------------------

    def _result(self, domain, plan, report):
        result = {'status': plan.status, 'method': METHOD_LABELS.get(plan.method), 'predicted': self.check_mode,
                  'read_from': 'qemu' if domain.nodes is not None else 'live_xml',
                  'taint': domain.taint(),
                  'disks': [outcome.as_dict() for outcome in plan.disks], 'pending': plan.pending,
                  'pause': report.get('pause'), 'error': report.get('error'),
                  'write_cache_kept': report.get('write_cache_kept', [])}
        return result


class _Request:
    """What a run asks of one running domain: its persistent XML, the changes that wait for a boot,
    the settings it tuned per disk (None: all) and the guards of its policy."""

    def __init__(self, config_root, later, tuned, guards):
        self.config_root = config_root
        self.later = list(later)
        self.tuned = tuned
        self.guards = guards


def live_diff(name, result):
    """A before/after text of what the running QEMU runs, for diff mode."""
    before, after = [], []
    for disk in result['disks']:
        if not disk['applied']:
            continue
        before.append('%s: %s' % (disk['target'], ' '.join('%s=%s' % kv for kv in sorted(disk['running'].items()))))
        after.append('%s: %s' % (disk['target'], ' '.join('%s=%s' % kv for kv in sorted(disk['now'].items()))))
    if not before:
        return None
    return {'before': '\n'.join(before) + '\n', 'after': '\n'.join(after) + '\n',
            'before_header': '%s (running QEMU, before)' % name, 'after_header': '%s (running QEMU, after)' % name}
