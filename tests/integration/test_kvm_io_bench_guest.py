# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm_io_bench mode=guest: a real guest (Debian kernel, busybox, fio) boots under the accelerator this
host offers, with disks kvm_disk_tune tuned, and reports from inside what it sees.

A test, not a benchmark: fio runs one second per workload. The guest is built once into the default
cache directory (/var/cache/kvmio/guest) and reused by every later run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._guest_bench_runner import DOMAIN_PREFIX
from ansible_collections.kvmio.tuning.plugins.modules import kvm_disk_tune, kvm_io_bench
from helpers import domain_xml as dx
from helpers.modules import finish_module_process, run_module, start_module_process

QUICK = {'mode': 'guest', 'runtime': 1, 'size': '64M', 'workloads': ['randwrite'], 'accelerator': 'tcg',
         'alternatives': 'none'}


def bench(uri, path, check=False, **options):
    args = dict(QUICK, uri=uri, path=path)
    args.update(options)
    return run_module(kvm_io_bench, args, check_mode=check)


def the_run(result):
    assert not result.failed, result
    assert len(result['runs']) == 1, result['runs']
    run = result['runs'][0]
    assert run['ended'] == 'done', run
    return run


def assert_guest_saw(run, prefix, write_cache, transport):
    """What the guest itself reported: device name (vdX is virtio-blk, sdX a SCSI/ATA disk), the block
    layer's write cache state, the device path (virtio for virtio-blk/-scsi, ataN for SATA/IDE), and that
    fio ran and its JSON was read."""
    disk = run['guest_disk']
    assert disk['name'].startswith(prefix), disk
    assert disk['write_cache'] == write_cache.replace(' ', '_'), disk
    assert transport in disk['path'], disk
    figures = run['figures']['randwrite']
    assert isinstance(figures, dict) and figures['iops'] > 0 and figures['ios'] > 0, figures


def no_bench_domains(conn):
    return [d.name() for d in conn.listAllDomains(0) if d.name().startswith(DOMAIN_PREFIX)]


@pytest.mark.embed
def test_guest_sees_disks_as_kvm_disk_tune_configured_them(embed_domains, embed_uri, image_dir, backup_dir):
    factory = embed_domains
    name = factory.name('guest')
    dom = factory.define(dx.domain(name, [
        dx.disk(factory.image(name + '-a.qcow2'), 'vda', 'virtio'),
        dx.disk(factory.image(name + '-b.qcow2'), 'sdb', 'scsi')], machine='q35'))
    tuned = run_module(kvm_disk_tune, {'uri': embed_uri, 'backup_dir': backup_dir, 'domains': [name],
                                       'disks': [{'match': 'sdb', 'cache': 'writethrough', 'io': 'threads'}]})
    assert not tuned.failed and tuned['changed'], tuned
    scratch = os.path.join(image_dir, 'bench')
    os.mkdir(scratch)

    # vda: what cache=auto gave it on ext4 (none/native): virtio-blk in the guest, with a write cache.
    run = the_run(bench(embed_uri, scratch, domain=dom.name(), disk='vda', references=False))
    assert_guest_saw(run, 'vd', 'write back', 'virtio')
    # sdb: explicit writethrough on virtio-scsi: a SCSI disk behind virtio, without a write cache.
    result = bench(embed_uri, scratch, domain=dom.name(), disk='sdb', references=False)
    run = the_run(result)
    assert_guest_saw(run, 'sd', 'write through', 'virtio')
    measured = result['candidates'][0]
    assert (measured['name'], measured['bus'], measured['cache'], measured['io']) == (
        'domain:sdb', 'scsi', 'writethrough', 'threads')
    assert measured['guest_write_cache'] == 'write through'
    assert result['measured']['accelerator'] == 'tcg' and 'caveat' in result['measured']
    assert os.listdir(scratch) == [], 'the scratch directory is removed'


@pytest.mark.embed
def test_ramfs_auto_gives_a_writeback_disk_that_works(embed_domains, embed_uri, ramfs_dir, backup_dir, image_dir):
    factory = embed_domains
    name = factory.name('ramfs')
    dom = factory.define(dx.domain(name, [dx.disk(factory.image(name + '.qcow2', directory=ramfs_dir), 'vda',
                                                  'virtio')], machine='q35'))
    tuned = run_module(kvm_disk_tune, {'uri': embed_uri, 'backup_dir': backup_dir, 'domains': [name]})
    assert not tuned.failed, tuned
    assert tuned['domains'][0]['disks'][0]['after']['cache'] == 'writeback', tuned['domains'][0]['disks'][0]
    scratch = os.path.join(ramfs_dir, 'bench')
    os.mkdir(scratch)
    # accelerator=auto: under KVM where it works; on hosts whose KVM hangs a stock kernel, the probe boot
    # times out and the run falls back to TCG, saying so.
    result = bench(embed_uri, scratch, domain=dom.name(), references=False, accelerator='auto', kvm_boot_timeout=10,
                   candidates=[{'name': 'needs-odirect', 'cache': 'none'}])
    run = the_run(result)
    assert result['odirect'] is False and result['filesystem'] == 'ramfs'
    assert result['candidates'][0]['cache'] == 'writeback'
    assert_guest_saw(run, 'vd', 'write back', 'virtio')
    assert len(result['skipped']) == 1
    assert result['skipped'][0].startswith('needs-odirect: cache=none needs O_DIRECT, which ramfs refuses')
    accel = result['accelerator']
    assert accel['requested'] == 'auto' and accel['used'] in ('kvm', 'tcg') and run['accelerator'] == accel['used']
    if accel['used'] == 'tcg' and os.access('/dev/kvm', os.W_OK):
        assert 'fell back to TCG' in accel['reason']
    assert os.listdir(scratch) == []


def test_under_libvirtd_references_ratios_and_cleanup(system_conn, image_dir):
    # QEMU runs as libvirt-qemu here: the benchmark's files must be reachable by it, and libvirtd destroys
    # the transient guest if the module dies (autodestroy).
    os.chmod(image_dir, 0o755)
    result = bench('qemu:///system', image_dir, alternatives='none',
                   candidates=[{'name': 'sata-directsync', 'bus': 'sata', 'cache': 'directsync', 'io': 'native'}])
    assert not result.failed, result
    names = [c['name'] for c in result['candidates']]
    assert names == ['virt-install', 'collection', 'collection+iothread', 'sata-directsync']
    assert [r['candidate'] for r in result['runs']] == names and all(r['ended'] == 'done' for r in result['runs'])
    runs = {r['candidate']: r for r in result['runs']}
    assert_guest_saw(runs['virt-install'], 'vd', 'write back', 'virtio')
    assert_guest_saw(runs['sata-directsync'], 'sd', 'write through', '/ata')
    baseline = result['candidates'][0]
    assert baseline['cache'] == 'default' and baseline['effective_cache'] == 'writeback'
    assert baseline['results']['randwrite']['ratio'] == 1.0
    plan = result['candidates'][1]
    assert (plan['cache'], plan['io'], plan['preallocation']) == ('none', 'native', 'metadata')
    assert set(result['collection']) == {'collection', 'collection+iothread'}
    assert result['fastest']['randwrite']['name'] in names and result['recommendation']['name'] in names
    assert result['measured']['cache_drop'].startswith('scratch image written out')
    assert [r['cache_drop'] for r in result['runs']] == ['done'] * 4
    assert os.listdir(image_dir) == []
    assert no_bench_domains(system_conn) == []


def test_sigterm_removes_the_guest_and_the_scratch_files(system_conn, image_dir):
    os.chmod(image_dir, 0o755)
    args = dict(QUICK, uri='qemu:///system', path=image_dir, runtime=30, references=False,
                candidates=[{'name': 'long'}])
    proc, args_file = start_module_process('kvm_io_bench', args)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not no_bench_domains(system_conn):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    assert no_bench_domains(system_conn), 'the guest never started'
    proc.send_signal(signal.SIGTERM)
    result = finish_module_process(proc, args_file, timeout=60)
    assert result.failed and 'terminated by SIGTERM' in result['msg'], result
    assert no_bench_domains(system_conn) == []
    assert os.listdir(image_dir) == []


def test_check_mode_runs_nothing_and_bad_input_is_refused(system_conn, image_dir, tmp_path):
    before = no_bench_domains(system_conn)
    planned = bench('qemu:///system', image_dir, check=True, alternatives='standard')
    assert planned['mode'] == 'guest'
    assert not planned.failed and planned['changed'] is False, planned
    assert 'runs' not in planned or planned['runs'] == []
    assert [c['name'] for c in planned['candidates']][:3] == ['virt-install', 'collection', 'collection+iothread']
    assert planned['skipped'][-1].startswith('check mode: ')
    assert os.listdir(image_dir) == [] and no_bench_domains(system_conn) == before

    def refused(path=image_dir, **options):
        result = bench('qemu:///system', path, **options)
        assert result.failed, result
        return result['msg']

    assert 'kernel and initrd go together' in refused(kernel='/boot/vmlinuz')
    assert 'not guest workloads' in refused(workloads=['write'])
    assert 'nothing to measure' in refused(references=False)
    assert "domain 'no-such-domain-g16' is not defined" in refused(domain='no-such-domain-g16')
    fake = tmp_path / 'initrd'
    fake.write_bytes(b'not a cpio')
    message = refused(kernel=str(fake), initrd=str(fake))
    assert message.startswith('initrd %s was not built by kvm_io_bench' % fake)
    host = run_module(kvm_io_bench, {'path': image_dir, 'workloads': ['randwrite']})
    assert host.failed and 'apply to mode=guest only' in host['msg']
    assert os.listdir(image_dir) == []

    small = tmp_path / 'small'
    small.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', str(small)], check=True)
    try:
        message = refused(path=str(small))
        assert message.startswith('only 8M free in %s' % small) and os.listdir(small) == []
    finally:
        subprocess.run(['umount', str(small)], check=True)


def test_guest_cache_directory_others_can_write_is_refused(system_conn, image_dir, tmp_path):
    shared = tmp_path / 'cache'
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    result = bench('qemu:///system', image_dir, cache_dir=str(shared))
    assert result.failed and 'is writable by others (mode 0777), so it is not used' in result['msg'], result
    assert os.listdir(shared) == [] and os.listdir(image_dir) == []


@pytest.mark.embed
def test_the_guest_builder_is_reusable_and_holds_when_asked(embed_conn, image_dir):
    # The API other tests use: guest_image() -> kernel and initrd, staged where QEMU can read them,
    # booted with kvmio.hold=1 to keep a real kernel running behind a disk.
    from ansible_collections.kvmio.tuning.plugins.module_utils._fio import parse_console
    from ansible_collections.kvmio.tuning.plugins.module_utils._guest_image import guest_image, stage_guest_image
    from ansible_collections.kvmio.tuning.plugins.module_utils._guest_xml import GuestDisk, GuestSpec, \
        guest_domain_xml

    image = guest_image()
    assert image.source in ('built', 'cache') and {'virtio', 'scsi', 'sata', 'ide'} <= set(image.buses)
    kernel, initrd = stage_guest_image(image, image_dir)
    disk = os.path.join(image_dir, 'disk.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '64M'], check=True)
    console = os.path.join(image_dir, 'console.log')
    spec = GuestSpec(name=DOMAIN_PREFIX + 'hold-test', kernel=kernel, initrd=initrd, console_log=console,
                     cmdline='console=ttyS0 quiet kvmio.bus=virtio kvmio.hold=1', disk=GuestDisk(path=disk))
    dom = embed_conn.createXML(guest_domain_xml(spec), 0)
    try:
        deadline = time.monotonic() + 180
        text = ''
        while time.monotonic() < deadline and 'KVMIO-HOLDING' not in text:
            time.sleep(0.5)
            with open(console, encoding='utf-8', errors='replace') as handle:
                text = handle.read()
        assert 'KVMIO-HOLDING' in text, text[-2000:]
        time.sleep(2)
        assert dom.isActive(), 'the guest keeps running'
        report = parse_console(text)
        assert report.done and report.disk['name'] == 'vda' and report.jobs == {}
    finally:
        if dom.isActive():
            dom.destroy()
