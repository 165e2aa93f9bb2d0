# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_blockdev: the nodes of a running disk as libvirt 9.0 builds them, on data recorded from
libvirt 9.0 and QEMU 7.2 on these machines (tools/record-live-data)."""

from __future__ import annotations

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._blockdev import (
    CACHE_FLAGS, cache_flags, cache_mode, chain_mismatch, detect_zeroes_mode, device_states, disk_chain, node_states,
    reopen_options)
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import ODIRECT_CACHES
from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import parse_domain
from ansible_collections.kvmio.tuning.plugins.module_utils._live_plan import driver_settings
from helpers.live_data import live_disks, load


@pytest.mark.parametrize('state', ['writeback', 'none'])
def test_options_are_the_ones_libvirt_gave_qemu_at_start(state):
    """The golden test: rebuilt from the live XML, every node's options equal the -blockdev
    options libvirt 9.0 wrote on QEMU's command line for that domain."""
    given = {options['node-name']: options for options in load('%s.blockdev.json' % state)}
    rebuilt = {}
    for disk in live_disks(state).values():
        chain = disk_chain(disk)
        assert chain.problem == ''
        for options in reopen_options(chain, driver_settings(disk)):
            rebuilt[options['node-name']] = options
    assert rebuilt == given


def test_reopen_lists_each_image_format_then_storage_top_first():
    chain = disk_chain(live_disks('writeback')['vda'])
    names = [o['node-name'] for o in reopen_options(chain, {'cache': 'none', 'io': 'threads'})]
    assert names == ['libvirt-2-format', 'libvirt-2-storage', 'libvirt-3-format', 'libvirt-3-storage']


def test_chain_of_the_live_xml():
    vda = disk_chain(live_disks('writeback')['vda'])
    assert (vda.target, vda.alias, vda.readonly) == ('vda', 'virtio-disk0', False)
    assert [(i.index, i.image_format, i.path) for i in vda.images] == [
        (2, 'qcow2', '/var/lib/libvirt/images/top.qcow2'), (3, 'qcow2', '/var/lib/libvirt/images/base.qcow2')]
    sda = disk_chain(live_disks('writeback')['sda'])
    assert [(i.format_node, i.storage_node, i.storage_driver) for i in sda.images] == [
        ('libvirt-1-format', 'libvirt-1-storage', 'file')]


def disk(extra='', driver="type='qcow2' cache='none'", source="file='/i/a.qcow2' index='4'", kind='file', backing=''):
    xml = ("<domain><devices><disk type='%s' device='disk'><driver name='qemu' %s/><source %s>%s</source>%s"
           "<target dev='vdb' bus='virtio'/>%s</disk></devices></domain>" % (kind, driver, source, '', backing, extra))
    return parse_domain(xml).find('devices/disk')


def test_block_device_uses_host_device():
    chain = disk_chain(disk(kind='block', source="dev='/dev/vg/lv' index='7'", driver="type='raw'"))
    storage = reopen_options(chain, {'io': 'native', 'cache': 'none'})[1]
    assert storage == {'driver': 'host_device', 'filename': '/dev/vg/lv', 'aio': 'native', 'node-name': 'libvirt-7-storage',
                       'cache': {'direct': True, 'no-flush': False}, 'auto-read-only': True, 'discard': 'unmap'}


def test_detect_zeroes_unmap_without_discard_unmap_is_passed_as_on_like_libvirt_does():
    chain = disk_chain(disk())
    top = reopen_options(chain, {'discard': 'ignore', 'detect_zeroes': 'unmap'})[0]
    assert top['detect-zeroes'] == 'on' and top['discard'] == 'ignore'
    assert detect_zeroes_mode('unmap', 'unmap') == 'unmap' and detect_zeroes_mode(None, 'off') == 'off'


def test_unset_settings_pass_nothing_so_qemu_keeps_its_defaults_as_at_start():
    top, storage = reopen_options(disk_chain(disk()), {})
    assert set(top) == {'node-name', 'read-only', 'driver', 'file', 'backing'} and top['backing'] is None
    assert 'aio' not in storage and 'cache' not in storage


@pytest.mark.parametrize('extra, driver, source, kind, why', [
    ('', "type='qcow2'", "file='/i/a.qcow2'", 'file', 'gives no node index'),
    ('', "type='vmdk'", "file='/i/a.vmdk' index='4'", 'file', "image format is 'vmdk'"),
    ('', "type='raw'", "pool='p' volume='v' index='4'", 'volume', "source type is 'volume'"),
    ('', "type='raw'", "protocol='rbd' name='p/i' index='4'", 'network', "source type is 'network'"),
    ('', "type='qcow2' copy_on_read='on'", "file='/i/a.qcow2' index='4'", 'file', 'copy_on_read'),
    ('<encryption format="luks"/>', "type='qcow2'", "file='/i/a.qcow2' index='4'", 'file', 'encrypted'),
])
def test_what_live_apply_does_not_rebuild_is_refused_with_the_reason(extra, driver, source, kind, why):
    chain = disk_chain(disk(extra=extra, driver=driver, source=source, kind=kind))
    assert why in chain.problem
    with pytest.raises(ValueError):
        reopen_options(chain, {})


def test_slices_reservations_and_metadata_cache_are_refused():
    sliced = parse_domain("<domain><devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                          "<source file='/i/a' index='3'><slices><slice type='storage' offset='0' size='1'/></slices>"
                          "</source><target dev='vdb' bus='virtio'/></disk></devices></domain>").find('devices/disk')
    assert 'storage slices' in disk_chain(sliced).problem
    cached = parse_domain("<domain><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'>"
                          "<metadata_cache><max_size unit='KiB'>8</max_size></metadata_cache></driver>"
                          "<source file='/i/a' index='3'/><target dev='vdb' bus='virtio'/></disk></devices></domain>")
    assert 'metadata_cache' in disk_chain(cached.find('devices/disk')).problem


def test_cache_flags_from_the_policy_tables_are_libvirts():
    # src/qemu/qemu_domain.c qemuDomainDiskCachemodeFlags: (writeback, direct, noflush)
    assert CACHE_FLAGS == {'none': (True, True, False), 'writeback': (True, False, False),
                           'unsafe': (True, False, True), 'directsync': (False, True, False),
                           'writethrough': (False, False, False)}
    assert {mode for mode, flags in CACHE_FLAGS.items() if flags[1]} == set(ODIRECT_CACHES)
    assert cache_flags(None) == CACHE_FLAGS['writeback']
    for mode, flags in CACHE_FLAGS.items():
        assert cache_mode(*flags) == mode
    assert cache_mode(False, False, True) is None       # no mode ignores flushes without a write cache


def test_qemu_reports_parsed_from_recorded_outputs():
    nodes = node_states(load('reopened-none.named-nodes.json'))
    assert sorted(nodes) == ['libvirt-%d-%s' % (n, k) for n in (1, 2, 3) for k in ('format', 'storage')]
    top = nodes['libvirt-2-format']
    assert (top.driver, top.direct, top.no_flush, top.detect_zeroes) == ('qcow2', True, False, 'unmap')
    assert top.backing_file == '/var/lib/libvirt/images/base.qcow2'
    assert nodes['libvirt-3-format'].read_only and nodes['libvirt-3-format'].backing_file is None
    devices = device_states(load('writeback.query-block.json'))
    assert devices['libvirt-2-format'].qdev == '/machine/peripheral/virtio-disk0/virtio-backend'
    # The firmware's virtio-blk driver negotiates no flush: QEMU turns that device's write cache off.
    assert devices['libvirt-2-format'].write_cache is False
    assert devices['libvirt-1-format'].qdev == 'sata0-0-0' and devices['libvirt-1-format'].write_cache is False


def test_chain_cross_checked_with_qemu():
    nodes = node_states(load('writeback.named-nodes.json'))
    devices = device_states(load('writeback.query-block.json'))
    disks = live_disks('writeback')
    assert chain_mismatch(disk_chain(disks['vda']), nodes, devices) == ''
    assert chain_mismatch(disk_chain(disks['sda']), nodes, devices) == ''
    moved = dict(nodes)
    del moved['libvirt-3-storage']
    assert chain_mismatch(disk_chain(disks['vda']), moved, devices) == 'QEMU has no node libvirt-3-storage'
    other = disk_chain(disks['vda'])
    other = other.__class__(other.target, 'virtio-disk7', other.readonly, other.images)
    assert 'belongs to device /machine/peripheral/virtio-disk0/virtio-backend' in chain_mismatch(other, nodes, devices)
    swapped = load('writeback.named-nodes.json')
    for node in swapped:
        if node['node-name'] == 'libvirt-2-storage':
            node['file'] = '/elsewhere.qcow2'
    assert 'opens /elsewhere.qcow2' in chain_mismatch(disk_chain(disks['vda']), node_states(swapped), devices)


def test_native_aio_without_o_direct_is_never_asked_for():
    with pytest.raises(ValueError, match='aio=native needs O_DIRECT'):
        reopen_options(disk_chain(disk()), {'io': 'native', 'cache': 'writeback'})
