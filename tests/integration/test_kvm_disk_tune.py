# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm_disk_tune against real libvirt (embedded driver and libvirtd), real images and QEMU."""

from __future__ import annotations

import os
import time

import libvirt
import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import canonical
from ansible_collections.kvmio.tuning.plugins.modules import kvm_disk_tune
from helpers.modules import run_module
from helpers import domain_xml as dx

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE


def typical_domain(factory, name=None, bus_mix=True):
    """A domain as users have them: thin qcow2, no cache set, IDE and SATA beside virtio, a cdrom."""
    name = name or factory.name()
    disks = [dx.disk(factory.image(name + '-root.qcow2'), 'vda', 'virtio')]
    if bus_mix:
        disks += [dx.disk(factory.image(name + '-ide.qcow2'), 'hdb', 'ide'),
                  dx.disk(factory.image(name + '-sata.raw', fmt='raw'), 'sda', 'sata', fmt='raw'),
                  dx.disk(None, 'hdc', 'ide', fmt='raw', device='cdrom')]
    return factory.define(dx.domain(name, disks, machine='pc' if bus_mix else 'q35'))


def drivers(dom):
    from lxml import etree
    root = etree.fromstring(dom.XMLDesc(INACTIVE).encode())
    return {d.find('target').get('dev'): dict(d.find('driver').attrib, bus=d.find('target').get('bus'))
            for d in root.findall('devices/disk')}


def tune(uri, backup_dir, check=False, diff=False, **options):
    args = {'uri': uri, 'backup_dir': backup_dir}
    args.update(options)
    return run_module(kvm_disk_tune, args, check_mode=check, diff=diff)


def test_policy_changes_then_second_run_is_a_noop(libvirt_env, backup_dir):
    uri, factory = libvirt_env
    dom = typical_domain(factory)
    original = dom.XMLDesc(INACTIVE)
    first = tune(uri, backup_dir, domains=[dom.name()], discard='unmap', detect_zeroes='auto')
    assert not first.failed, first
    assert first['changed'] is True
    after = drivers(dom)
    assert after['vda']['cache'] == 'none' and after['vda']['io'] == 'native'
    assert after['vda']['discard'] == 'unmap' and after['vda']['detect_zeroes'] == 'unmap'
    assert after['sda']['cache'] == 'none' and after['hdb']['cache'] == 'none'
    assert 'cache' not in after['hdc'], 'a cdrom gets no cache setting'
    reasons = {d['target']: d['reasons'] for d in first['domains'][0]['disks']}
    assert reasons['vda']['cache'] == 'auto: O_DIRECT works on ext4'
    # The backup holds the XML libvirt had before the define.
    assert len(first['backups']) == 1
    with open(first['backups'][0], encoding='utf-8') as handle:
        assert canonical(handle.read()) == canonical(original)
    assert oct(os.stat(first['backups'][0]).st_mode & 0o777) == '0o600'
    second = tune(uri, backup_dir, domains=[dom.name()], discard='unmap', detect_zeroes='auto')
    assert second['changed'] is False, second['domains'][0]['changes']
    assert second['backups'] == []


def test_check_mode_plans_without_defining_and_agrees_with_the_real_run(libvirt_env, backup_dir):
    uri, factory = libvirt_env
    dom = typical_domain(factory)
    original = dom.XMLDesc(INACTIVE)
    planned = tune(uri, backup_dir, check=True, diff=True, domains=[dom.name()])
    assert planned['changed'] is True
    assert dom.XMLDesc(INACTIVE) == original
    assert not os.path.exists(backup_dir)
    assert planned['diff'][0]['before_header'] == '%s (inactive XML, before)' % dom.name()
    assert "cache=\"none\"" in planned['diff'][0]['after'] and "cache=\"none\"" not in planned['diff'][0]['before']
    real = tune(uri, backup_dir, diff=True, domains=[dom.name()])
    assert real['changed'] is True
    assert [d['changes'] for d in real['domains']] == [d['changes'] for d in planned['domains']]
    assert tune(uri, backup_dir, check=True, domains=[dom.name()])['changed'] is False


def test_one_call_tunes_every_matching_domain_and_honours_exclude_and_overrides(libvirt_env, backup_dir):
    uri, factory = libvirt_env
    prefix = factory.name('fleet')
    doms = [typical_domain(factory, '%s-%d' % (prefix, i), bus_mix=False) for i in range(4)]
    result = tune(uri, backup_dir, domains=[prefix + '-*'], exclude=[prefix + '-3'],
                  overrides={prefix + '-1': {'cache': 'writeback', 'io': 'threads'},
                             prefix + '-2': {'skip': True}})
    assert not result.failed, result
    assert sorted(d['name'] for d in result['domains']) == ['%s-%d' % (prefix, i) for i in (0, 1)]
    assert drivers(doms[0])['vda']['cache'] == 'none'
    assert drivers(doms[1])['vda'] == {'name': 'qemu', 'type': 'qcow2', 'cache': 'writeback', 'io': 'threads',
                                       'bus': 'virtio'}
    assert 'cache' not in drivers(doms[2])['vda'] and 'cache' not in drivers(doms[3])['vda']


def test_bad_input_fails_naming_the_thing_and_changes_nothing(libvirt_env, backup_dir):
    uri, factory = libvirt_env
    dom = typical_domain(factory)
    original = dom.XMLDesc(INACTIVE)
    unknown = tune(uri, backup_dir, domains=[dom.name(), 'no-such-vm'])
    assert unknown.failed and unknown['msg'] == "domain is not found at %s: 'no-such-vm'" % uri
    impossible = tune(uri, backup_dir, domains=[dom.name()], cache='writeback', io='native')
    assert impossible.failed
    assert impossible['msg'].startswith('%s: disk vda (%s): io=native needs cache=none or directsync (O_DIRECT), '
                                        'not cache=writeback' % (dom.name(), factory.image_dir + '/' + dom.name()
                                                                 + '-root.qcow2'))
    assert impossible['msg'].endswith('. Nothing was changed.')
    typo = tune(uri, backup_dir, domains=[dom.name()], disks=[{'match': 'vdz', 'cache': 'writeback'}])
    assert typo.failed and typo['msg'] == 'disks: no disk has the target or source vdz; nothing was changed'
    unsafe = tune(uri, backup_dir, domains=[dom.name()], cache='unsafe', io='threads')
    assert unsafe.failed and 'set allow_unsafe=true' in unsafe['msg']
    assert dom.XMLDesc(INACTIVE) == original
    assert not os.path.exists(backup_dir)


def test_libvirt_down_is_a_clear_error(backup_dir):
    result = tune('qemu+unix:///system?socket=/nonexistent/libvirt-sock', backup_dir)
    assert result.failed
    assert result['msg'].startswith("cannot connect to libvirt at URI 'qemu+unix:///system?socket=/nonexistent/"
                                    "libvirt-sock': ")
    assert 'Check the URI, and that libvirtd (or virtqemud) runs on this host.' in result['msg']


def test_bus_conversion_to_virtio_scsi_gives_a_domain_that_starts(libvirt_env, backup_dir):
    uri, factory = libvirt_env
    name = factory.name('bus')
    disks = [dx.disk(factory.image(name + '-a.qcow2'), 'hda', 'ide'),
             dx.disk(factory.image(name + '-b.qcow2'), 'hdb', 'ide'),
             dx.disk(factory.image(name + '-c.qcow2'), 'sda', 'sata'),
             dx.disk(factory.image(name + '-d.qcow2'), 'vda', 'virtio'),
             dx.disk(None, 'hdc', 'ide', fmt='raw', device='cdrom')]
    dom = factory.define(dx.domain(name, disks, machine='pc', vcpus=2))
    kept = tune(uri, backup_dir, domains=[name], bus='scsi', scsi_queues='auto', cache='keep', io='keep')
    assert [d['bus'] for d in drivers(dom).values()].count('ide') == 2, 'the boot disk (hda) and cdrom stay'
    assert any('hda is the boot disk and stays on bus ide' in w for w in kept.warning_messages)
    result = tune(uri, backup_dir, domains=[name], bus='scsi', scsi_queues='auto', convert_boot_disk=True,
                  discard='unmap')
    assert not result.failed, result
    assert any('moves to bus scsi' in w for w in result.warning_messages)
    from lxml import etree
    root = etree.fromstring(dom.XMLDesc(INACTIVE).encode())
    buses = {d.find('target').get('dev'): d.find('target').get('bus') for d in root.findall('devices/disk')}
    assert sorted(buses.items()) == [('hdc', 'ide'), ('sda', 'scsi'), ('sdb', 'scsi'), ('sdc', 'scsi'),
                                     ('sdd', 'scsi')]
    scsi = root.findall("devices/controller[@type='scsi']")
    assert [(c.get('model'), c.find('driver').get('queues')) for c in scsi] == [('virtio-scsi', '2')]
    assert tune(uri, backup_dir, domains=[name], bus='scsi', scsi_queues='auto', convert_boot_disk=True,
                discard='unmap')['changed'] is False
    dom.create()
    try:
        assert dom.isActive()
        live = etree.fromstring(dom.XMLDesc(0).encode())
        assert len(live.findall("devices/disk/target[@bus='scsi']")) == 4
    finally:
        dom.destroy()


def test_running_domain_is_listed_in_restart_required(libvirt_env, backup_dir):
    uri, factory = libvirt_env
    dom = typical_domain(factory, bus_mix=False)
    dom.create()
    try:
        result = tune(uri, backup_dir, domains=[dom.name()])
        assert result['restart_required'] == [dom.name()]
        assert result['domains'][0]['restart_required'] is True
        live = dom.XMLDesc(0)
        assert "cache='none'" not in live, 'the module never restarts or live-edits'
    finally:
        dom.destroy()
    dom.create()
    try:
        assert "cache='none'" in dom.XMLDesc(0)
    finally:
        dom.destroy()


def test_storage_without_odirect(system_domains, backup_dir, ramfs_dir):
    """ramfs refuses O_DIRECT: cache=none is refused, auto picks writeback, and QEMU agrees."""
    factory = system_domains
    name = factory.name('ramfs')
    image = factory.image(name + '.qcow2', directory=ramfs_dir)
    dom = factory.define(dx.domain(name, [dx.disk(image, 'vda', 'virtio', cache='none', io='native')]))
    with pytest.raises(libvirt.libvirtError) as refused:
        dom.create()
    assert 'O_DIRECT' in str(refused.value) or 'Invalid argument' in str(refused.value)
    explicit = tune('qemu:///system', backup_dir, domains=[name], cache='none')
    assert explicit.failed
    assert ('disk vda (%s): cache=none needs O_DIRECT, which ramfs refuses' % image) in explicit['msg']
    fixed = tune('qemu:///system', backup_dir, domains=[name])
    assert not fixed.failed, fixed
    assert drivers(dom)['vda']['cache'] == 'writeback' and drivers(dom)['vda']['io'] in ('io_uring', 'threads')
    storage = fixed['storage'][image]
    assert storage['fstype'] == 'ramfs' and storage['odirect'] is False
    dom.create()
    try:
        time.sleep(0.2)
        assert dom.isActive()
    finally:
        dom.destroy()


def test_xml_path_mode_tunes_a_file_in_place(tmp_path, backup_dir, image_dir):
    image = os.path.join(image_dir, 'tpl.qcow2')
    from helpers import qemu_img
    qemu_img.create(image)
    path = tmp_path / 'web.xml'
    text = dx.domain('web-template', [dx.disk(image, 'hda', 'ide')],
                     metadata="\n  <metadata><app:info xmlns:app='urn:example'>keep <b>me</b></app:info></metadata>"
                     "\n  <!-- a comment users keep -->")
    path.write_text(text)
    os.chmod(path, 0o640)
    result = tune('qemu:///system', backup_dir, xml_path=str(path), bus='virtio', convert_boot_disk=True)
    assert not result.failed, result
    assert result['changed'] is True
    new = path.read_text()
    assert "dev='vda' bus='virtio'" in new and "cache='none'" in new
    assert '<!-- a comment users keep -->' in new and 'keep <b>me</b>' in new
    assert oct(os.stat(path).st_mode & 0o777) == '0o640'
    with open(result['backups'][0], encoding='utf-8') as handle:
        assert handle.read() == text + '\n'
    again = tune('qemu:///system', backup_dir, xml_path=str(path), bus='virtio', convert_boot_disk=True)
    assert again['changed'] is False and path.read_text() == new


def test_summary_result_keeps_names_counts_restarts_and_backups_only(libvirt_env, backup_dir):
    import json
    uri, factory = libvirt_env
    doms = [typical_domain(factory, bus_mix=False) for _number in range(4)]
    names = sorted(d.name() for d in doms)
    options = dict(domains=names, discard='unmap', detect_zeroes='auto')
    planned = tune(uri, backup_dir, check=True, **options)      # full, the default
    summary = tune(uri, backup_dir, result_detail='summary', **options)
    assert not summary.failed, summary
    assert summary['changed'] is True and summary['restart_required'] == []
    assert [sorted(d) for d in summary['domains']] == [['changed', 'name', 'restart_required']] * 4
    assert sorted(d['name'] for d in summary['domains'] if d['changed']) == names
    assert summary['counts'] == {'domains': 4, 'changed': 4, 'restart_required': 0, 'disks': 4,
                                 'changes': sum(len(d['changes']) for d in planned['domains'])}
    assert summary['counts'] == planned['counts']
    assert summary['storage'] == {} and planned['storage']
    assert len(summary['backups']) == 4
    # What is dropped is the per-disk detail: what was applied is the same as the full run planned.
    assert all(drivers(d)['vda']['cache'] == 'none' for d in doms)
    assert len(json.dumps(summary['domains'])) * 10 < len(json.dumps(planned['domains']) + json.dumps(planned['storage']))
    again = tune(uri, backup_dir, result_detail='summary', **options)
    assert again['changed'] is False and again['backups'] == [] and again['counts']['changed'] == 0
