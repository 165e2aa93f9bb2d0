# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""iothread_pin on libvirtd with running domains of type qemu (QEMU runs; no guest OS needed)."""

from __future__ import annotations

import libvirt
from lxml import etree

from ansible_collections.kvmio.tuning.plugins.modules import iothread_pin
from helpers import domain_xml as dx
from helpers.modules import run_module

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE


def pin(backup_dir, check=False, diff=False, **options):
    args = {'uri': 'qemu:///system', 'backup_dir': backup_dir}
    args.update(options)
    return run_module(iothread_pin, args, check_mode=check, diff=diff)


def cpus(cpumap):
    return {cpu for cpu, on in enumerate(cpumap) if on}


def running_domain(factory, disks=2, vcpus=1):
    name = factory.name('pin')
    devs = [dx.disk(factory.image('%s-%d.qcow2' % (name, i)), 'vd%s' % 'abcd'[i], 'virtio') for i in range(disks)]
    dom = factory.define(dx.domain(name, devs, vcpus=vcpus))
    dom.create()
    return dom


def test_explicit_pins_apply_live_and_to_the_config_then_noop(system_domains, backup_dir):
    import os
    os.chmod(system_domains.image_dir, 0o755)
    dom = running_domain(system_domains)
    options = dict(domains=[dom.name()], iothreads='auto', vcpu_pinning='1', emulator_pinning='0',
                   iothread_pinning='0')
    planned = pin(backup_dir, check=True, **options)
    assert planned['changed'] and dom.ioThreadInfo(LIVE) == [] and cpus(dom.emulatorPinInfo(LIVE)) == {0, 1}
    result = pin(backup_dir, diff=True, **options)
    assert not result.failed, result
    assert result['changed'] and result['restart_required'] == [dom.name()]
    # Live: read back through libvirt.
    assert [cpus(m) for m in dom.vcpuPinInfo(LIVE)] == [{1}]
    assert cpus(dom.emulatorPinInfo(LIVE)) == {0}
    assert sorted((n, cpus(m)) for n, m in dom.ioThreadInfo(LIVE)) == [(1, {0}), (2, {0})]
    # Config: iothreads, pins and one iothread per disk, round robin.
    root = etree.fromstring(dom.XMLDesc(INACTIVE).encode())
    assert root.findtext('iothreads') == '2'
    assert [d.find('driver').get('iothread') for d in root.findall('devices/disk')] == ['1', '2']
    assert root.find('cputune/vcpupin').get('cpuset') == '1'
    assert root.find('cputune/emulatorpin').get('cpuset') == '0'
    assert len(result['backups']) == 1
    again = pin(backup_dir, **options)
    assert again['changed'] is False, again['domains']
    dom.destroy()
    dom.create()          # the config alone brings the same pins back at boot
    try:
        assert [cpus(m) for m in dom.vcpuPinInfo(LIVE)] == [{1}]
        assert sorted((n, cpus(m)) for n, m in dom.ioThreadInfo(LIVE)) == [(1, {0}), (2, {0})]
    finally:
        dom.destroy()


def test_auto_allocator_places_what_fits_and_reports_the_rest(system_domains, backup_dir):
    import os
    os.chmod(system_domains.image_dir, 0o755)
    first = running_domain(system_domains, disks=1)
    second = running_domain(system_domains, disks=1)
    try:
        result = pin(backup_dir, domains=[first.name(), second.name()], vcpu_pinning='auto',
                     emulator_pinning='auto', iothread_pinning='auto')
        assert not result.failed, result
        placed = {d['name']: d['placement'] for d in result['domains']}
        # This host: 2 CPUs, one node; CPU 0 is the housekeeping core, so one 1-vCPU domain fits.
        fitted = [n for n, p in placed.items() if p]
        assert len(fitted) == 1 and placed[fitted[0]]['vcpus'] == {'0': '1'} and placed[fitted[0]]['emulator'] == '0'
        loser = ({first.name(), second.name()} - set(fitted)).pop()
        assert result['unplaced'] == {loser: '1 vCPUs do not fit on any node (free vCPU CPUs per node: 0: 0)'}
        assert any('not pinned (they do not fit)' in w for w in result.warning_messages)
        winner = first if fitted[0] == first.name() else second
        assert [cpus(m) for m in winner.vcpuPinInfo(LIVE)] == [{1}]
        again = pin(backup_dir, domains=[first.name(), second.name()], vcpu_pinning='auto',
                    emulator_pinning='auto', iothread_pinning='auto')
        assert again['changed'] is False
        assert [d['placement']['kept'] for d in again['domains'] if d['placement']] == [True]
        strict = pin(backup_dir, domains=[first.name(), second.name()], vcpu_pinning='auto', fail_on_unplaced=True)
        assert strict.failed and strict['msg'].startswith('could not place every domain, nothing was changed')
    finally:
        first.destroy()
        second.destroy()


def test_bad_cpusets_fail_naming_the_domain_and_change_nothing(system_domains, backup_dir):
    name = system_domains.name('badpin')
    dom = system_domains.define(dx.domain(name, [dx.disk(system_domains.image(name + '.qcow2'), 'vda', 'virtio')]))
    original = dom.XMLDesc(INACTIVE)
    out_of_range = pin(backup_dir, domains=[name], vcpu_pinning='0-63')
    assert out_of_range.failed
    assert out_of_range['msg'].startswith('%s: vcpu_pinning 0-63 uses CPU 2-63, which this host does not have' % name)
    malformed = pin(backup_dir, domains=[name], emulator_pinning='1-x')
    assert malformed.failed and "'1-x' is not a CPU number or range" in malformed['msg']
    reserved = pin(backup_dir, domains=[name], vcpu_pinning='auto', reserved_cpus='7')
    assert reserved.failed and 'reserved_cpus uses CPU 7, which this host does not have' in reserved['msg']
    assert dom.XMLDesc(INACTIVE) == original


def test_summary_result_keeps_names_counts_and_drops_placements_and_changes(system_domains, backup_dir):
    import json
    import os
    os.chmod(system_domains.image_dir, 0o755)
    doms = []
    for _number in range(3):
        name = system_domains.name('pin')
        disk = dx.disk(system_domains.image(name + '.qcow2'), 'vda', 'virtio')
        doms.append(system_domains.define(dx.domain(name, [disk])))
    options = dict(domains=[d.name() for d in doms], iothreads='auto', vcpu_pinning='auto', emulator_pinning='auto',
                   iothread_pinning='auto', pinning_mode='shared')
    planned = pin(backup_dir, check=True, **options)
    summary = pin(backup_dir, result_detail='summary', **options)
    assert not summary.failed, summary
    assert [sorted(d) for d in summary['domains']] == [['active', 'changed', 'iothreads', 'name',
                                                        'restart_required']] * 3
    assert all(d['changed'] and d['iothreads'] == 1 for d in summary['domains'])
    assert summary['counts'] == planned['counts']
    assert summary['counts']['domains'] == 3 and summary['counts']['changed'] == 3
    assert summary['counts']['placed'] == 3 and summary['counts']['unplaced'] == 0
    assert summary['counts']['config_changes'] == sum(len(d['config_changes']) for d in planned['domains'])
    assert len(summary['backups']) == 3 and summary['unplaced'] == {}
    assert all(etree.fromstring(d.XMLDesc(INACTIVE).encode()).findtext('iothreads') == '1' for d in doms)
    assert len(json.dumps(summary['domains'])) * 3 < len(json.dumps(planned['domains']))
    assert pin(backup_dir, result_detail='summary', **options)['changed'] is False
