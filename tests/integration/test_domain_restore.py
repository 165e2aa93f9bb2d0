# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_restore undoing a kvm_disk_tune run from the backups it returned; domain_restart in check mode."""

from __future__ import annotations

import os

import libvirt

from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import canonical
from ansible_collections.kvmio.tuning.plugins.modules import domain_restart, domain_restore, kvm_disk_tune
from helpers import domain_xml as dx
from helpers.modules import run_module

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
URI = 'qemu:///system'


def test_undo_one_run_from_its_backups(system_domains, backup_dir):
    name = system_domains.name('undo')
    dom = system_domains.define(dx.domain(name, [dx.disk(system_domains.image(name + '.qcow2'), 'vda', 'virtio')]))
    original = dom.XMLDesc(INACTIVE)
    tuned = run_module(kvm_disk_tune, {'uri': URI, 'domains': [name], 'backup_dir': backup_dir})
    assert tuned['changed'] and len(tuned['backups']) == 1
    planned = run_module(domain_restore, {'uri': URI, 'backups': tuned['backups'], 'backup_dir': backup_dir},
                         check_mode=True, diff=True)
    assert planned['changed'] and canonical(dom.XMLDesc(INACTIVE)) != canonical(original)
    assert planned['diff'][0]['after_header'] == '%s (restored from %s)' % (name, tuned['backups'][0])
    restored = run_module(domain_restore, {'uri': URI, 'backups': tuned['backups'], 'backup_dir': backup_dir})
    assert restored['changed'] and canonical(dom.XMLDesc(INACTIVE)) == canonical(original)
    assert os.path.dirname(restored['backups'][0]) == os.path.join(backup_dir, 'before-restore')
    again = run_module(domain_restore, {'uri': URI, 'domains': [name], 'backup_dir': backup_dir})
    assert again['changed'] is False, 'the latest backup is still the pre-tuning XML'


def test_restore_errors_name_the_problem(system_domains, backup_dir):
    missing = run_module(domain_restore, {'uri': URI, 'domains': ['nobody'], 'backup_dir': backup_dir})
    assert missing.failed and missing['msg'] == 'no backup of domain nobody from libvirt qemu:///system in %s' % backup_dir
    nothing = run_module(domain_restore, {'uri': URI, 'backup_dir': backup_dir})
    assert nothing.failed and nothing['msg'].startswith('name the backups to restore')


def test_restart_check_mode_lists_running_domains_and_skips_the_rest(system_domains):
    os.chmod(system_domains.image_dir, 0o755)
    names = []
    for index in range(2):
        name = system_domains.name('rs%d' % index)
        names.append(name)
        system_domains.define(dx.domain(name, [dx.disk(system_domains.image(name + '.qcow2'), 'vda', 'virtio')]))
    running = system_domains.conn.lookupByName(names[0])
    running.create()
    try:
        result = run_module(domain_restart, {'uri': URI, 'domains': names}, check_mode=True)
        assert result['changed'] and result['restarted'] == [names[0]] and result['skipped'] == [names[1]]
        assert running.isActive()
    finally:
        running.destroy()
