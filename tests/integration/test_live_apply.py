# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm_disk_tune apply=live / live_or_pause on running domains of libvirtd (QEMU under TCG).

The domains have no guest OS: I/O is done by ``qemu-io`` inside QEMU, through the monitor, on the
guest's own device (so its write cache applies); what was written is read back from the host with
``qemu-io -U`` after a flush. QEMU's state is checked with QMP (``query-named-block-nodes``,
``query-block``, ``qom-get``), independently of the module's code.
"""

from __future__ import annotations

import os
import subprocess
import threading

import libvirt

from ansible_collections.kvmio.tuning.plugins.modules import kvm_io_info
from helpers import domain_xml as dx
from helpers.live import (INACTIVE, SATA, SCSI, URI, VIRTIO, allocated, domain_id, driver, firmware_has_set_up_virtio_blk,
                          flags, guest_write_caches, host_reads, live_of, named, nodes, qcow2_chain, qemu_io, qmp,
                          running_domain, tainted, tune)
from helpers.modules import run_module


# --- tier 1: blockdev-reopen ---------------------------------------------------------------------

def test_none_and_writeback_live_on_a_chain_under_io(domains, backup_dir, save_dir):
    top, _base = qcow2_chain(domains, domains.name('img'))
    # A SCSI disk: the firmware leaves its write cache on (its virtio-blk driver turns a virtio disk's
    # off). Its virtio-scsi controller runs in an iothread: the nodes belong to another AioContext than
    # the monitor's.
    disk = dx.disk(top, 'sda', 'scsi', cache='writeback', io='threads')
    controller = "<controller type='scsi' index='0' model='virtio-scsi'><driver iothread='1'/></controller>"
    name = domains.name('live')
    dom = domains.define(dx.domain(name, [disk], extra_devices=controller, metadata='<iothreads>1</iothreads>'))
    dom.create()
    chain = ('libvirt-2-format', 'libvirt-2-storage', 'libvirt-1-format', 'libvirt-1-storage')
    assert flags(dom, *chain) == [(False, False)] * 4
    qemu_io(dom, SCSI, 'write -P 0xab 0 1M')
    # I/O keeps going while the module reopens the chain.
    written, stop = [], threading.Event()

    def writer():
        for n in range(1, 200):
            if stop.is_set():
                return
            qemu_io(dom, SCSI, 'write -P %d %d 64k' % (n, (1 << 20) + n * 65536))
            written.append(n)

    thread = threading.Thread(target=writer)
    thread.start()
    result = tune(URI, backup_dir, save_dir, dom, cache='none', apply='live', diff=True)
    stop.set()
    thread.join()
    live, disks = live_of(result)
    assert result['changed'] is True and result['restart_required'] == []
    assert (live['status'], live['method'], live['read_from'], live['taint']) == (
        'applied_live', 'blockdev-reopen', 'qemu', 'custom-monitor')
    assert result['tainted'] == [dom.name()] and tainted(dom)
    assert disks['sda']['status'] == 'applied_live' and disks['sda']['applied'] == ['cache']
    assert 0 < disks['sda']['reopen_ms'] < 5000 and disks['sda']['host_sync_ms'] is not None
    assert result['domains'][0]['live_changes'] == [
        {'device': 'sda', 'setting': 'cache', 'before': 'writeback', 'after': 'none',
         'reason': 'blockdev-reopen, without a restart', 'live': True}]
    assert result['diff'][-1]['after_header'] == '%s (running QEMU, after)' % dom.name()
    # QEMU's own state: every node of the chain opened with O_DIRECT; the live XML is stale, as documented.
    assert flags(dom, *chain) == [(True, False)] * 4
    assert driver(dom.XMLDesc(INACTIVE), 'sda')['cache'] == 'none'
    assert driver(dom.XMLDesc(0), 'sda')['cache'] == 'writeback'
    # Nothing written was lost, before or during the reopen.
    qemu_io(dom, SCSI, 'flush')
    assert written and host_reads(top, 'qcow2', '0xab', 0, 1 << 20)
    assert all(host_reads(top, 'qcow2', str(n), (1 << 20) + n * 65536, 65536) for n in written)
    # Judged on QEMU's state: a second run changes nothing.
    again = tune(URI, backup_dir, save_dir, dom, cache='none', apply='live')
    assert again['changed'] is False and live_of(again)[1]['sda']['status'] == 'in_sync'
    # The audit shows the three views: persistent, live XML, and what QEMU runs.
    audit = run_module(kvm_io_info, {'uri': URI, 'domains': [dom.name()], 'inspect_images': False})
    (sda,) = [d for d in audit['domains'][0]['disks'] if d['target'] == 'sda']
    assert (sda['settings']['cache'], sda['live_settings']['cache'], sda['running']['cache']) == (
        'none', 'writeback', 'none')
    assert sda['running']['read_from'] == 'qemu' and 'stale_live_xml' in sda['findings']
    # And back to writeback, live.
    back = tune(URI, backup_dir, save_dir, dom, cache='writeback', apply='live')
    assert live_of(back)[1]['sda']['status'] == 'applied_live'
    assert flags(dom, *chain) == [(False, False)] * 4


def test_discard_and_detect_zeroes_live(libvirt_env, backup_dir, save_dir):
    uri, factory = libvirt_env
    path = factory.image(factory.name('img') + '.qcow2')
    dom = running_domain(factory, [dx.disk(path, 'vda', 'virtio', cache='none', io='native')])
    qemu_io(dom, VIRTIO, 'write -P 0xcd 0 512k')
    qemu_io(dom, VIRTIO, 'flush')
    qemu_io(dom, VIRTIO, 'discard 0 64k')           # discard=ignore: the image keeps the cluster
    qemu_io(dom, VIRTIO, 'flush')
    assert allocated(path, 0, 65536)
    # discard alone: QEMU does not report it; the module records what it set for this QEMU process.
    first = tune(uri, backup_dir, save_dir, dom, discard='unmap', apply='live')
    assert live_of(first)[1]['vda']['applied'] == ['discard']
    assert tune(uri, backup_dir, save_dir, dom, discard='unmap', apply='live')['changed'] is False
    qemu_io(dom, VIRTIO, 'discard 0 64k')
    qemu_io(dom, VIRTIO, 'flush')
    assert not allocated(path, 0, 65536), 'the guest discard reached the image'
    assert host_reads(path, 'qcow2', '0xcd', 65536, 458752)
    # detect_zeroes: visible in QEMU, and zero writes become unmaps.
    second = tune(uri, backup_dir, save_dir, dom, discard='unmap', detect_zeroes='unmap', apply='live')
    assert live_of(second)[1]['vda']['applied'] == ['detect_zeroes']
    assert nodes(dom)['libvirt-1-format']['detect_zeroes'] == 'unmap'
    qemu_io(dom, VIRTIO, 'write -P 0 128k 64k')
    qemu_io(dom, VIRTIO, 'flush')
    assert not allocated(path, 131072, 65536) and allocated(path, 196608, 65536)
    assert flags(dom, 'libvirt-1-format', 'libvirt-1-storage') == [(True, False)] * 2


def test_aio_and_iothread_are_refused_live_and_left_for_a_pause_or_a_restart(domains, backup_dir, save_dir):
    path = domains.image(domains.name('img') + '.qcow2')
    dom = running_domain(domains, [dx.disk(path, 'vda', 'virtio', cache='none', io='native')],
                         extra='<iothreads>1</iothreads>')
    # The persistent config moves the disk to iothread 1 (as iothread_pin does).
    dom = domains.conn.defineXML(dom.XMLDesc(INACTIVE).replace("io='native'", "io='native' iothread='1'"))
    before = nodes(dom)
    result = tune(URI, backup_dir, save_dir, dom, cache='writeback', io='threads', apply='live')
    live, disks = live_of(result)
    assert result['restart_required'] == [dom.name()] and result['domains'][0]['restart_required'] is True
    assert (live['status'], disks['vda']['status']) == ('restart_required', 'restart_required')
    why = {p['setting']: p['why'] for p in disks['vda']['pending']}
    assert why['io'].startswith('QEMU cannot change aio on a running disk')
    assert why['iothread'].startswith('a running disk cannot move to another iothread')
    assert why['cache'].startswith('io=native stays until io changes')
    # QEMU was left alone: native aio keeps its O_DIRECT.
    after = nodes(dom)
    assert [after[n]['cache'] for n in before] == [before[n]['cache'] for n in before]


def test_writethrough_to_none_is_partial_and_leaves_the_write_cache_alone(domains, backup_dir, save_dir):
    vda = domains.image(domains.name('img') + '.qcow2')
    sda = domains.image(domains.name('img') + '-sata.qcow2')
    dom = running_domain(domains, [dx.disk(vda, 'vda', 'virtio', cache='writethrough'),
                                   dx.disk(sda, 'sda', 'sata', cache='writethrough')])
    caches_before = guest_write_caches(dom)
    properties = [qmp(dom, 'qom-get', path=p, property='write-cache')
                  for p in ('/machine/peripheral/virtio-disk0', '/machine/peripheral/sata0-0-0')]
    assert properties == ['off', 'off'] and caches_before[SATA] is False
    result = tune(URI, backup_dir, save_dir, dom, cache='none', apply='live')
    live, disks = live_of(result)
    assert live['status'] == 'partially_applied' and result['restart_required'] == [dom.name()]
    for target in ('vda', 'sda'):
        assert disks[target]['status'] == 'partially_applied'
        assert (disks[target]['running']['cache'], disks[target]['now']['cache']) == ('writethrough', 'directsync')
        (pending,) = disks[target]['pending']
        assert pending['setting'] == 'cache' and pending['wanted'] == 'none'
        assert pending['why'].startswith("the guest's write cache (WCE) cannot change while it runs")
    # O_DIRECT now; the write cache the guests see is as it was, so they still flush every write.
    assert flags(dom, 'libvirt-2-format', 'libvirt-2-storage', 'libvirt-1-format', 'libvirt-1-storage') == \
        [(True, False)] * 4
    assert guest_write_caches(dom) == caches_before
    assert [qmp(dom, 'qom-get', path=p, property='write-cache')
            for p in ('/machine/peripheral/virtio-disk0', '/machine/peripheral/sata0-0-0')] == ['off', 'off']
    assert tune(URI, backup_dir, save_dir, dom, cache='none', apply='live')['changed'] is False


def test_check_mode_changes_nothing_live(domains, backup_dir, save_dir):
    path = domains.image(domains.name('img') + '.qcow2')
    dom = running_domain(domains, [dx.disk(path, 'vda', 'virtio', cache='writeback', io='threads')])
    config, live_xml, running_id = dom.XMLDesc(INACTIVE), dom.XMLDesc(0), domain_id(dom)
    planned = tune(URI, backup_dir, save_dir, dom, check=True, cache='none', io='native', discard='unmap',
                   apply='live_or_pause')
    live, disks = live_of(planned)
    assert planned['changed'] is True and live['predicted'] is True and live['method'] == 'save-restore'
    assert live['read_from'] == 'live_xml' and live['taint'] is None and live['pause'] is None
    assert disks['vda']['wanted']['io'] == 'native'
    # Not saved, not reopened, not even asked through the monitor.
    assert not tainted(dom)
    assert (dom.XMLDesc(INACTIVE), dom.XMLDesc(0), domain_id(dom)) == (config, live_xml, running_id)
    assert not os.path.exists(save_dir) and not os.path.exists(backup_dir)
    assert flags(dom, 'libvirt-1-format', 'libvirt-1-storage') == [(False, False)] * 2


def test_a_restore_that_undoes_a_reopen_is_detected_and_reapplied(domains, backup_dir, save_dir, tmp_path):
    path = domains.image(domains.name('img') + '.qcow2')
    dom = running_domain(domains, [dx.disk(path, 'vda', 'virtio', cache='writeback', io='threads')])
    tune(URI, backup_dir, save_dir, dom, cache='none', discard='unmap', apply='live')
    assert flags(dom, 'libvirt-1-format')[0] == (True, False)
    # An admin's save/restore rebuilds QEMU from the live XML, which still says writeback.
    image = str(tmp_path / 'admin.save')
    dom.save(image)
    domains.conn.restore(image)
    os.unlink(image)
    assert flags(dom, 'libvirt-1-format')[0] == (False, False)
    result = tune(URI, backup_dir, save_dir, dom, cache='none', discard='unmap', apply='live')
    live, disks = live_of(result)
    assert result['changed'] is True and live['read_from'] == 'qemu'
    assert disks['vda']['running']['cache'] == named(dom, VIRTIO, 'writeback', 'writethrough')
    assert disks['vda']['running']['discard'] == 'ignore'
    assert sorted(disks['vda']['applied']) == ['cache', 'discard']
    assert flags(dom, 'libvirt-1-format', 'libvirt-1-storage') == [(True, False)] * 2


def test_nothing_changes_under_a_block_job(domains, backup_dir, save_dir):
    top, base = qcow2_chain(domains, domains.name('img'))
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x11 0 8M', base], check=True, capture_output=True)
    dom = running_domain(domains, [dx.disk(top, 'vda', 'virtio', cache='writeback', io='threads')])
    dom.blockPull('vda', 1, 0)          # 1 MiB/s: the 8 MiB take seconds
    try:
        assert dom.blockJobInfo('vda', 0)
        result = tune(URI, backup_dir, save_dir, dom, cache='none', apply='live_or_pause')
        live, disks = live_of(result)
        assert live['status'] == 'restart_required' and live['method'] is None
        assert disks['vda']['pending'][0]['why'] == 'a block job is in progress on disk vda: nothing is changed under it'
        assert dom.isActive() and flags(dom, 'libvirt-2-format')[0] == (False, False)
    finally:
        dom.blockJobAbort('vda', 0)


# --- tier 2: save -> save-image-define -> restore ---------------------------------------------------

def test_a_pause_applies_io_with_the_guest_data_intact(domains, backup_dir, save_dir):
    vda = domains.image(domains.name('img') + '.qcow2')
    sda = domains.image(domains.name('img') + '-sata.qcow2')
    dom = running_domain(domains, [dx.disk(vda, 'vda', 'virtio', cache='writeback', io='threads'),
                                   dx.disk(sda, 'sda', 'sata', cache='writeback', io='threads')])
    firmware_has_set_up_virtio_blk(dom)
    qemu_io(dom, VIRTIO, 'write -P 0x5a 0 1M')       # left in QEMU's cache: the save must keep it
    qemu_io(dom, SATA, 'write -P 0xa5 0 1M')
    write_caches = guest_write_caches(dom)
    assert write_caches == {VIRTIO: False, SATA: True}
    result = tune(URI, backup_dir, save_dir, dom, cache='none', io='native', apply='live_or_pause')
    live, disks = live_of(result)
    assert live['method'] == 'save-restore' and live['error'] is None
    pause = live['pause']
    assert 0 < pause['pause_seconds'] < 120
    assert pause['pause_seconds'] >= pause['save_seconds'] + pause['restore_seconds']
    assert pause['image_bytes'] > 0
    # The SATA guest device runs with its write cache on: it gets none + native entirely.
    assert disks['sda']['status'] == 'applied_live' and disks['sda']['now']['cache'] == 'none'
    # The firmware's virtio-blk driver cannot flush, so QEMU turned that device's write cache off:
    # the restore keeps it off (directsync), and none waits for a restart.
    assert disks['vda']['status'] == 'partially_applied'
    assert (disks['vda']['now']['cache'], disks['vda']['now']['io']) == ('directsync', 'native')
    assert dom.isActive() and live['read_from'] == 'qemu', 'the new QEMU process is read to check it'
    assert live['taint'] == 'custom-monitor' and tainted(dom), 'the check marks it, as any QMP command does'
    assert driver(dom.XMLDesc(0), 'vda')['io'] == 'native' and driver(dom.XMLDesc(0), 'sda')['cache'] == 'none'
    assert os.listdir(save_dir) == [] and oct(os.stat(save_dir).st_mode & 0o777) == '0o700'
    assert guest_write_caches(dom) == write_caches
    qemu_io(dom, VIRTIO, 'flush')
    qemu_io(dom, SATA, 'flush')
    assert host_reads(vda, 'qcow2', '0x5a', 0, 1 << 20) and host_reads(sda, 'qcow2', '0xa5', 0, 1 << 20)
    again = tune(URI, backup_dir, save_dir, dom, cache='none', io='native', apply='live_or_pause')
    assert again['changed'] is False and live_of(again)[0]['method'] is None


def test_a_failing_pause_restores_the_guest_unchanged(domains, backup_dir, save_dir, ramfs_dir):
    path = domains.image(domains.name('img') + '.qcow2', directory=ramfs_dir)
    dom = running_domain(domains, [dx.disk(path, 'vda', 'virtio', cache='writeback', io='threads')])
    qemu_io(dom, VIRTIO, 'write -P 0x77 0 1M')
    live_xml = dom.XMLDesc(0)
    # ramfs refuses O_DIRECT: the restored QEMU cannot open the image with cache=none.
    result = tune(URI, backup_dir, save_dir, dom, cache='none', io='native', probe_storage=False,
                  apply='live_or_pause')
    live, disks = live_of(result)
    assert live['status'] == 'restart_required' and live['method'] is None
    assert 'O_DIRECT' in live['error'] and live['error'].endswith('the domain was restored unchanged')
    assert disks['vda']['status'] == 'restart_required' and disks['vda']['applied'] == []
    assert any('save/restore with the new settings failed' in w for w in result.warning_messages)
    assert dom.isActive() and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert driver(dom.XMLDesc(0), 'vda') == driver(live_xml, 'vda')
    assert os.listdir(save_dir) == []
    qemu_io(dom, VIRTIO, 'flush')
    assert host_reads(path, 'qcow2', '0x77', 0, 1 << 20)


def test_a_save_dir_others_can_enter_is_refused_and_nothing_pauses(domains, backup_dir, tmp_path):
    path = domains.image(domains.name('img') + '.qcow2')
    dom = running_domain(domains, [dx.disk(path, 'vda', 'virtio', cache='writeback', io='threads')])
    open_dir = tmp_path / 'open'
    open_dir.mkdir(mode=0o755)
    os.chmod(open_dir, 0o755)
    running_id = domain_id(dom)
    result = tune(URI, backup_dir, str(open_dir), dom, cache='none', io='native', apply='live_or_pause')
    live, disks = live_of(result)
    assert 'must belong to uid 0 with mode 0700' in live['error']
    assert live['method'] == 'blockdev-reopen' and domain_id(dom) == running_id, 'not saved; what a reopen can do is done'
    assert disks['vda']['now']['cache'] == named(dom, VIRTIO, 'none', 'directsync')
    assert 'io' in [p['setting'] for p in disks['vda']['pending']]
    assert os.listdir(open_dir) == []
