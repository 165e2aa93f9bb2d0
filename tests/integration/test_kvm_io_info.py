# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm_io_info on real domains built to show each finding, then after tuning."""

from __future__ import annotations

import json

from ansible_collections.kvmio.tuning.plugins.modules import iothread_pin, kvm_disk_tune, kvm_io_info
from helpers import domain_xml as dx
from helpers import qemu_img
from helpers.modules import run_module

URI = 'qemu:///system'


def codes(result, subject):
    return sorted(f['code'] for f in result['findings'] if f['subject'] == subject)


def test_each_finding_on_real_domains_and_none_after_tuning(system_domains, tmp_path, ramfs_dir, backup_dir):
    factory = system_domains
    prefix = factory.name('audit')
    thin = factory.image(prefix + '-thin.qcow2')
    prealloc = factory.image(prefix + '-pre.qcow2', preallocation='metadata')
    on_ramfs = qemu_img.create(ramfs_dir + '/r.qcow2', '16M')
    factory.define(dx.domain(prefix + '-legacy', [dx.disk(thin, 'hda', 'ide')]))
    factory.define(dx.domain(prefix + '-broken', [dx.disk(on_ramfs, 'vda', 'virtio', cache='none', io='native')]))
    factory.define(dx.domain(prefix + '-wt', [dx.disk(prealloc, 'vda', 'virtio', cache='writethrough', io='threads')]))
    image_a = factory.image(prefix + '-a.qcow2', preallocation='metadata')
    pinned_a = dx.domain(prefix + '-pa', [dx.disk(image_a, 'vda', 'virtio', cache='none', io='native')])
    factory.define(pinned_a.replace('</vcpu>', '</vcpu>\n  <cputune><vcpupin vcpu="0" cpuset="1"/></cputune>'))
    image_b = factory.image(prefix + '-b.qcow2', preallocation='metadata')
    pinned_b = dx.domain(prefix + '-pb', [dx.disk(image_b, 'vda', 'virtio', cache='none', io='native')])
    factory.define(pinned_b.replace('</vcpu>', '</vcpu>\n  <iothreads>1</iothreads>\n  <cputune><vcpupin vcpu="0" '
                                    'cpuset="1"/><iothreadpin iothread="1" cpuset="0"/></cputune>'))
    facts = run_module(kvm_io_info, {'uri': URI, 'domains': [prefix + '-*']}, check_mode=True)
    assert not facts.failed and facts['changed'] is False, facts
    # A disk without a cache attribute runs writeback (QEMU >= 1.2): host_page_cache, not writethrough.
    assert codes(facts, prefix + '-legacy/hda') == ['host_page_cache', 'ide_bus', 'no_discard', 'thin_qcow2']
    assert codes(facts, prefix + '-broken/vda') == ['no_discard', 'no_iothread', 'odirect_refused', 'thin_qcow2']
    assert codes(facts, prefix + '-wt/vda') == ['no_discard', 'no_iothread', 'writethrough']
    assert codes(facts, prefix + '-pa') == ['pins_overlap'] and codes(facts, prefix + '-pb') == ['pins_overlap']
    broken = next(f for f in facts['findings'] if f['code'] == 'odirect_refused')
    assert broken['severity'] == 'critical' and broken['fix'] == 'kvm_disk_tune cache=writeback io=io_uring'
    assert facts['findings'][0]['severity'] == 'critical'
    assert facts['summary']['critical'] == 1
    legacy = next(d for d in facts['domains'] if d['name'] == prefix + '-legacy')
    assert legacy['disks'][0]['image']['preallocation'] == 'off' and legacy['disks'][0]['storage']['odirect']
    assert legacy['disks'][0]['settings']['cache'] is None
    assert legacy['disks'][0]['effective'] == {'cache': 'writeback', 'io': 'threads', 'discard': 'ignore',
                                               'detect_zeroes': 'off', 'guest_write_cache': True, 'odirect': False}
    written_through = next(d for d in facts['domains'] if d['name'] == prefix + '-wt')['disks'][0]['effective']
    assert written_through['guest_write_cache'] is False

    # Tune what the audit found and audit again: the disk findings the tuning owns are gone.
    run_module(kvm_disk_tune, {'uri': URI, 'domains': [prefix + '-*'], 'discard': 'unmap', 'bus': 'scsi',
                               'convert_boot_disk': True, 'backup_dir': backup_dir})
    run_module(iothread_pin, {'uri': URI, 'domains': [prefix + '-*'], 'backup_dir': backup_dir})
    run_module(iothread_pin, {'uri': URI, 'domains': [prefix + '-pb'], 'vcpu_pinning': '1', 'backup_dir': backup_dir})
    after = run_module(kvm_io_info, {'uri': URI, 'domains': [prefix + '-*']})
    remaining = sorted({f['code'] for f in after['findings']})
    assert remaining == ['pins_overlap', 'thin_qcow2'], after['findings']
    assert after['summary']['critical'] == 0 and after['summary']['high'] == 0


SWAP_ON_OPEN = r'''
import ctypes, os, sys
directory = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
watch = libc.inotify_init()
assert libc.inotify_add_watch(watch, os.path.join(directory, 'disk.qcow2').encode(), 0x20) >= 0   # IN_OPEN
print('ready', flush=True)
os.read(watch, 4096)                     # the probe opened the image: now the name leads to a FIFO
os.symlink('pipe', os.path.join(directory, 'link.new'))
os.replace(os.path.join(directory, 'link.new'), os.path.join(directory, 'link'))
print('swapped', flush=True)
'''


def test_qemu_img_reads_what_the_probe_checked(system_domains):
    # Issue 14, second review (L8): the probe opened each disk safely, then qemu-img opened it again by
    # name; a name swapped for a FIFO right after the probe opened the image held the read for its whole
    # 30 s bound.
    import os
    import subprocess
    import sys
    import time

    factory = system_domains
    directory = factory.image_dir
    qemu_img.create(os.path.join(directory, 'disk.qcow2'), '16M')
    os.mkfifo(os.path.join(directory, 'pipe'))
    os.symlink('disk.qcow2', os.path.join(directory, 'link'))
    name = factory.name('swap')
    factory.define(dx.domain(name, [dx.disk(os.path.join(directory, 'link'), 'vda', 'virtio')]))
    swapper = subprocess.Popen([sys.executable, '-c', SWAP_ON_OPEN, directory], stdout=subprocess.PIPE, text=True)
    try:
        assert swapper.stdout.readline() == 'ready\n'
        started = time.monotonic()
        facts = run_module(kvm_io_info, {'uri': URI, 'domains': [name]})
        elapsed = time.monotonic() - started
        assert swapper.stdout.readline() == 'swapped\n', 'the probe never opened the image'
    finally:
        swapper.kill()
        swapper.wait()
    assert not facts.failed, facts.get('msg')
    disk = facts['domains'][0]['disks'][0]
    assert disk['storage']['kind'] == 'file', disk['storage']
    assert elapsed < 25 and 'did not finish' not in json.dumps(disk['image']), (elapsed, disk['image'])
    assert disk['image'].get('format') == 'qcow2' or 'is a FIFO' in disk['image']['error'], disk['image']
