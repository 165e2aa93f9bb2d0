# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Reading what a running QEMU really runs, and bringing it to the persistent disk settings.

``_live_plan`` and ``_blockdev`` decide; this file reads the live XML and QEMU's block nodes through
the libvirt client, and carries out a decision: one ``blockdev-reopen`` per disk chain, each checked
on QEMU's nodes afterwards, or one save -> save-image-define -> restore per domain (``_save_image``).
kvm_disk_tune (``apply``) and kvm_io_info (``read_qemu``) use it.

QEMU's monitor is used only where needed: every QMP command makes libvirt taint the domain
(custom-monitor) for the life of its QEMU process. A domain with no live-apply record and no such
taint runs exactly its live XML, so it is read from there, and check mode never sends a command to a
domain that has none of them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from ._blockdev import chain_mismatch, device_states, disk_chain, node_states, reopen_options
from ._domain_xml import parse_domain
from ._errors import KvmioError
from ._live_plan import (METHOD_LABELS, RECORD_NAMESPACE, RECORD_TAG, choose_method, driver_settings,
                         live_iothreads, memory_bytes, merged_discards, pair_disks, plan_reopen, plan_restore,
                         record_xml, recorded_discards, restore_xml, running_from_live_xml, running_from_qemu, undone,
                         unpaired_outcome, verify)
from ._save_image import check_free_space, private_directory, save_define_restore

TAINT = 'custom-monitor'
READ_QEMU_CHOICES = ('auto', 'always', 'never')
_TAINT_WORDS = ('custom monitor', 'custom-monitor')


class RunningDomain:
    """One running domain as read now: its live XML and, once ``read_qemu`` ran, QEMU's nodes."""

    def __init__(self, client, dom):
        self.client = client
        self.dom = dom
        self.name = dom.name()
        self.live_text = client.live_xml(dom)
        self.live_root = parse_domain(self.live_text, 'the live XML of domain %s' % self.name)
        self.nodes = None
        self.devices = None
        self.process = None
        self.monitor_used = False

    def qmp(self, command, **arguments):
        self.monitor_used = True
        return self.client.qmp(self.dom, command, **arguments)

    def may_differ_from_live_xml(self):
        """Whether QEMU may run what its live XML does not say: a live-apply record is there, or libvirt
        reports the custom-monitor taint (or cannot report taints)."""
        if self.live_root.find('metadata/' + RECORD_TAG) is not None:
            return True
        messages = self.client.taint_messages(self.dom)
        if messages is None:
            return True
        return any(word in message for message in messages for word in _TAINT_WORDS)

    def read_qemu(self):
        self.nodes = node_states(self.qmp('query-named-block-nodes', flat=True))
        self.devices = device_states(self.qmp('query-block'))
        # Which QEMU process this is: a restore, a migration or a restart gives another id and threads.
        cpus = sorted((c.get('cpu-index', 0), c.get('thread-id', 0)) for c in self.qmp('query-cpus-fast') or [])
        self.process = '%d:%d' % (self.client.domain_id(self.dom), cpus[0][1] if cpus else 0)

    def taint(self):
        """'custom-monitor' when libvirt marks the running QEMU process so (or this run used its monitor)."""
        if self.monitor_used:
            return TAINT
        messages = self.client.taint_messages(self.dom) or []
        return TAINT if any(word in message for message in messages for word in _TAINT_WORDS) else None

    def running(self, live_disk):
        """(DiskChain, RunningDisk, why a reopen cannot touch the disk or '') of a live ``<disk>``."""
        chain = disk_chain(live_disk)
        settings = driver_settings(live_disk)
        refused = chain.problem
        if self.nodes is not None and not refused:
            refused = chain_mismatch(chain, self.nodes, self.devices)
            if not refused:
                recorded = recorded_discards(self.live_root, self.process).get(chain.top.format_node)
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
    """{target: (live driver settings, RunningDisk)} of a running domain, for an audit."""
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


class LiveApply:
    """Applies persistent disk settings to running domains; ``apply`` may run for several domains at once."""

    def __init__(self, client, check_mode, allow_pause, save_dir, warn):
        self.client = client
        self.check_mode = check_mode
        self.allow_pause = allow_pause
        self.save_dir = save_dir
        self.warn = warn
        # Domains are applied several at a time (see _parallel); saves go one at a time: each takes the
        # guest's memory in disk space and I/O.
        self._one_save_at_a_time = threading.Lock()

    def apply(self, dom, config_xml, config_only_changes=()):
        """Brings one running domain to ``config_xml``'s disk settings. Returns its result dict and
        the Change records done (or, in check mode, that would be done)."""
        domain = RunningDomain(self.client, dom)
        config_root = parse_domain(config_xml, 'the XML of domain %s' % domain.name)
        if domain.may_differ_from_live_xml():
            domain.read_qemu()
        plan, disks = self._plan(domain, config_root, config_only_changes)
        if plan.method and domain.nodes is None and not self.check_mode:
            domain.read_qemu()          # act on QEMU's real state, not on the live XML's
            plan, disks = self._plan(domain, config_root, config_only_changes)
        busy = self._busy(domain, plan) if plan.method else ''
        if busy:
            plan, disks = self._plan(domain, config_root, config_only_changes, refused=busy)
        report = {}
        if plan.method and not self.check_mode:
            if plan.method == 'restore':
                with self._one_save_at_a_time:
                    plan, report = self._restore(domain, plan, config_root, config_only_changes, disks)
            if plan.method == 'reopen':
                self._reopen(domain, plan, disks)
        return self._result(domain, plan, report), plan.changes

    # --- deciding -----------------------------------------------------------------------------

    def _plan(self, domain, config_root, config_only_changes, refused='', allow_pause=None):
        pairs = pair_disks(config_root, domain.live_root)
        targets = {pair.target for pair in pairs}
        pending = [{'setting': c.setting, 'device': c.device, 'running': c.before, 'wanted': c.after,
                    'why': 'applies at the next boot'} for c in config_only_changes if c.device not in targets]
        iothreads = live_iothreads(domain.live_root)
        reopens, restores, disks = [], [], {}
        for pair in pairs:
            if pair.live is None:
                reopens.append(unpaired_outcome(pair))
                restores.append(unpaired_outcome(pair))
                continue
            chain, running, why = domain.running(pair.live)
            live_settings = driver_settings(pair.live)
            disks[pair.target] = (chain, live_settings)
            reopens.append(plan_reopen(pair.target, pair.wanted, running, live_settings, refused or why))
            restores.append(plan_restore(pair.target, pair.wanted, running, iothreads))
        pause = self.allow_pause if allow_pause is None else allow_pause
        plan = choose_method(domain.name, reopens, restores, pause and not refused, pending)
        return plan, disks

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
        for position, outcome in enumerate(plan.disks):
            if outcome.method != 'reopen':
                continue
            chain, live_settings = disks[outcome.target]
            options = reopen_options(chain, outcome.driver)
            start = time.monotonic()
            try:
                domain.qmp('blockdev-reopen', options=options)
            except KvmioError as err:
                # blockdev-reopen is atomic: a refused one changed nothing.
                plan.disks[position] = undone(outcome, err.msg)
                self.warn('%s: disk %s: %s; left as it runs' % (domain.name, outcome.target, err.msg))
                continue
            outcome.seconds = time.monotonic() - start
            nodes = node_states(domain.qmp('query-named-block-nodes', flat=True))
            now = running_from_qemu(chain, live_settings, nodes, domain.devices, outcome.expected.discard)
            problems = verify(outcome, now)
            if problems:
                outcome.error = 'QEMU reports after the reopen: %s' % '; '.join(problems)
                self.warn('%s: disk %s: %s' % (domain.name, outcome.target, outcome.error))
            discards[chain.top.format_node] = outcome.expected.discard
        if discards:
            record = record_xml(domain.process, merged_discards(domain.live_root, domain.process, discards))
            try:
                self.client.set_live_metadata(domain.dom, record, 'kvmio', RECORD_NAMESPACE)
            except KvmioError as err:
                self.warn('%s: cannot record the discard set live (%s): QEMU does not report it, so the next run '
                          'applies it again' % (domain.name, err.msg))

    # --- save -> save-image-define -> restore ---------------------------------------------------

    def _restore(self, domain, plan, config_root, config_only_changes, disks):
        write_caches = {o.target: o.expected.guest_write_cache for o in plan.disks if o.changes and o.expected}
        try:
            save_dir = private_directory(self.save_dir)
            check_free_space(save_dir, memory_bytes(domain.live_root), domain.name)
            # Built once from the live XML: a plan that would turn a guest's write cache on stops here,
            # before the guest is paused.
            restore_xml(domain.live_text, plan.disks, write_caches)
        except KvmioError as err:
            self.warn('%s: no save/restore (%s); applying what a reopen can' % (domain.name, err.msg))
            plan, _disks = self._plan(domain, config_root, config_only_changes, allow_pause=False)
            return plan, {'error': err.msg}
        pause = save_define_restore(self.client, domain.dom, save_dir,
                                    lambda image: restore_xml(image, plan.disks, write_caches,
                                                              'the save image XML of domain %s' % domain.name))
        domain.monitor_used = False             # a new QEMU process runs now
        report = {'pause': pause.as_dict()}
        if pause.restored_unchanged:
            self.warn('%s: save/restore with the new settings failed (%s)' % (domain.name, pause.error))
            plan.disks = [undone(o, pause.error) if o.changes else o for o in plan.disks]
            plan.method = None
            report['error'] = pause.error
            return plan, report
        live_root = parse_domain(self.client.live_xml(domain.dom), 'the live XML of domain %s' % domain.name)
        restored = {d.find('target').get('dev'): d for d in live_root.findall('devices/disk') if d.find('target') is not None}
        for outcome in plan.disks:
            if not outcome.changes:
                continue
            disk = restored.get(outcome.target)
            now = running_from_live_xml(outcome.target, driver_settings(disk)) if disk is not None else None
            problems = verify(outcome, now) if now is not None else ['the disk is missing after the restore']
            if problems:
                outcome.error = 'the restored domain runs otherwise: %s' % '; '.join(problems)
                self.warn('%s: disk %s: %s' % (domain.name, outcome.target, outcome.error))
        return plan, report

    # --- result ---------------------------------------------------------------------------------

    def _result(self, domain, plan, report):
        result = {'status': plan.status, 'method': METHOD_LABELS.get(plan.method), 'predicted': self.check_mode,
                  'read_from': 'qemu' if domain.nodes is not None else 'live_xml',
                  'taint': domain.taint(),
                  'disks': [outcome.as_dict() for outcome in plan.disks], 'pending': plan.pending,
                  'pause': report.get('pause'), 'error': report.get('error')}
        return result


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
