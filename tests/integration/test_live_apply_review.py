# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 18, review: what could go wrong with apply=live / live_or_pause, as it happened, against
libvirtd and QEMU, with a Linux guest where the finding needs one (``helpers.shell_guest``).

F1 a pause turning on a write cache the guest turned off; F2 the live step doing more than the plan
decided; F3 the reopen's own flush freezing the guest; F4 a domain stopping during the run; F5 a save
whose connection is lost; F6 a QEMU process repeating the id and thread ids of an earlier one; F7
QMP sent to untainted domains; F8 the reported cache mode; F10 the pause of a failed save; F11 two
spellings of one libvirt URI; F13 check mode predicting a pause a real run refuses. (F9 and F12:
tests/unit, test__live_plan.py and test__save_image.py.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import libvirt
import libvirt_qemu
import pytest
from lxml import etree

from ansible_collections.kvmio.tuning.plugins.module_utils._lock import HostLock
from ansible_collections.kvmio.tuning.plugins.modules import kvm_disk_tune, kvm_io_info
from helpers import domain_xml as dx
from helpers.live import (INACTIVE, SCSI, URI, VIRTIO, domain_id, driver, firmware_has_set_up_virtio_blk,
                          guest_write_caches, host_reads, live_of, nodes, qemu_io, running_domain, tainted, tune)
from helpers.modules import finish_module_process, run_module, start_module_process
from helpers.shell_guest import ShellGuest

VIRTIO_SCSI = "<controller type='scsi' index='0' model='virtio-scsi'/>"
QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'


@pytest.fixture
def shell_guest(image_dir):
    guest = ShellGuest(image_dir)
    yield guest
    guest.cleanup()


def write_caches(dom):
    """{target: bool} the write cache QEMU runs each guest device with (query-block), by target."""
    by_device = guest_write_caches(dom)
    caches = {}
    for disk in etree.fromstring(dom.XMLDesc(0).encode()).findall('devices/disk'):
        alias = disk.find('alias').get('name')
        for device, on in by_device.items():
            if device == alias or device.startswith('/machine/peripheral/%s/' % alias):
                caches[disk.find('target').get('dev')] = on
    return caches


def top_node(dom, target):
    """The format node libvirt gave the top image of disk ``target`` (``libvirt-N-format``)."""
    disk = etree.fromstring(dom.XMLDesc(0).encode()).find("devices/disk/target[@dev='%s']/.." % target)
    return nodes(dom)['libvirt-%s-format' % disk.find('source').get('index')]


def wait_for(condition, timeout=60, what='it'):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'waited %d s for %s' % (timeout, what)
        time.sleep(0.2)


# --- F1: a pause never turns a guest's write cache on -----------------------------------------------

def test_a_pause_keeps_every_write_cache_its_linux_guest_turned_off(domains, backup_dir, save_dir, shell_guest):
    name = domains.name('wce')
    image = {t: domains.image('%s-%s.qcow2' % (name, t)) for t in ('vda', 'vdb', 'vdc', 'sda', 'sdb')}
    disks = [dx.disk(image['vda'], 'vda', 'virtio', cache='writeback', io='threads'),
             dx.disk(image['vdb'], 'vdb', 'virtio', cache='writeback', io='threads'),
             dx.disk(image['vdc'], 'vdc', 'virtio', cache='unsafe', io='threads'),
             dx.disk(image['sda'], 'sda', 'scsi', cache='writeback', io='threads')]
    dom = domains.define(shell_guest.domain_xml(name, disks, buses=('virtio', 'scsi'), extra_devices=VIRTIO_SCSI))
    dom.create()
    console = shell_guest.console(name)
    # A disk plugged into the running guest only: the persistent configuration does not have it.
    dom.attachDeviceFlags(dx.disk(image['sdb'], 'sdb', 'scsi', cache='writeback', io='threads'),
                          libvirt.VIR_DOMAIN_AFFECT_LIVE)
    wait_for(lambda: console.run('ls /sys/class/scsi_disk | wc -l') == '2', what='the guest to see sdb')
    # The guest writes through on vdb, vdc and both SCSI disks: it sends them no flushes from now on.
    console.run('for d in vdb vdc; do echo "write through" > /sys/block/$d/cache_type; done; '
                'for s in /sys/class/scsi_disk/*; do echo "write through" > $s/cache_type; done')
    show = 'for d in vda vdb vdc sda sdb; do echo $d $(cat /sys/block/$d/queue/write_cache); done'
    believed = console.run(show)
    assert believed.split('\n') == ['vda write back', 'vdb write through', 'vdc write through',
                                    'sda write through', 'sdb write through']
    before = write_caches(dom)
    assert before == {'vda': True, 'vdb': False, 'vdc': False, 'sda': False, 'sdb': False}
    options = {'cache': 'none', 'io': 'native', 'apply': 'live_or_pause',
               'disks': [{'match': 'vdb', 'skip': True}, {'match': 'vdc', 'skip': True}]}
    running_id = domain_id(dom)
    # vdc, which the run leaves alone, runs unsafe under a guest without a write cache: no cache mode of
    # a restored domain keeps both, so there is no pause at all; what a reopen can do is done.
    first = tune(URI, backup_dir, save_dir, dom, **options)
    live, _disks = live_of(first)
    assert write_caches(dom) == before and domain_id(dom) == running_id, 'nothing was saved or restored'
    assert 'disk vdc runs cache=unsafe and its guest has turned its write cache off' in live['error']
    assert live['method'] == 'blockdev-reopen' and live['pause'] is None
    # With vdc's write cache on again, the pause goes ahead and keeps every device's write cache: the
    # hotplugged sdb, the skipped vdb and vdc, the tuned vda and sda.
    console.run('echo "write back" > /sys/block/vdc/cache_type')
    before['vdc'] = True
    second = tune(URI, backup_dir, save_dir, dom, **options)
    live, disks = live_of(second)
    assert live['method'] == 'save-restore' and domain_id(dom) != running_id, live
    assert write_caches(dom) == before, 'QEMU after the restore'
    assert console.run(show) == believed.replace('vdc write through', 'vdc write back'), 'the guest after it'
    # The restored domain says what it runs: the disks the plan left alone got the cache mode with the
    # same O_DIRECT and no-flush and the write cache their guest runs with.
    restored = dom.XMLDesc(0)
    assert {t: driver(restored, t).get('cache') for t in image} == {
        'vda': 'none', 'vdb': 'writethrough', 'vdc': 'unsafe', 'sda': 'directsync', 'sdb': 'writethrough'}
    assert (driver(restored, 'vda')['io'], driver(restored, 'sda')['io'], driver(restored, 'vdb')['io']) == (
        'native', 'native', 'threads')
    assert sorted(k['target'] for k in live['write_cache_kept']) == ['sdb', 'vdb']
    assert disks['sda']['status'] == 'partially_applied' and disks['vda']['status'] == 'applied_live'
    assert live['read_from'] == 'qemu' and os.listdir(save_dir) == []


# --- F2: the live step does what the plan decided, under the same rules ------------------------------

def test_a_live_run_applies_only_what_its_plan_decided_under_the_same_rules(domains, backup_dir, save_dir):
    name = domains.name('plan')
    sda, vdc = domains.image(name + '-sda.qcow2'), domains.image(name + '-vdc.qcow2')
    vdb, vdd = domains.image(name + '-vdb.raw', fmt='raw'), domains.image(name + '-vdd.raw', fmt='raw')
    dom = running_domain(domains, [
        dx.disk(sda, 'sda', 'sata', cache='writeback'),
        dx.disk(vdb, 'vdb', 'virtio', fmt='raw', cache='none', extra='<shareable/>'),
        dx.disk(vdc, 'vdc', 'virtio', cache='writeback'),
        dx.disk(vdd, 'vdd', 'virtio', fmt='raw', cache='none', extra='<shareable/>')], name=name)
    # An admin's edits of the persistent configuration, for the next boot: sda unsafe, vdb writeback,
    # vdc detect_zeroes=on, vdd no longer shareable.
    config = etree.fromstring(dom.XMLDesc(INACTIVE).encode())
    for target, attribute, value in (('sda', 'cache', 'unsafe'), ('vdb', 'cache', 'writeback'),
                                     ('vdc', 'detect_zeroes', 'on')):
        config.find("devices/disk/target[@dev='%s']/../driver" % target).set(attribute, value)
    vdd_config = config.find("devices/disk/target[@dev='vdd']/..")
    vdd_config.remove(vdd_config.find('shareable'))
    domains.conn.defineXML(etree.tostring(config, encoding='unicode'))
    result = tune(URI, backup_dir, save_dir, dom, discard='unmap', apply='live',
                  disks=[{'match': 'vdc', 'skip': True}, {'match': 'vdd', 'cache': 'writeback'}])
    live, disks = live_of(result)
    # What the run decided (discard) reached sda and vdb; the admin's cache edits did not.
    assert (disks['sda']['applied'], disks['vdb']['applied']) == (['discard'], ['discard'])
    sda_cache = top_node(dom, 'sda')['cache']
    assert (sda_cache['direct'], sda_cache['no-flush']) == (False, False), 'writeback, not unsafe'
    assert top_node(dom, 'vdb')['cache']['direct'] is True, 'the shareable disk keeps O_DIRECT'
    # The skipped disk is not touched, whatever its configuration says.
    assert 'vdc' not in disks and top_node(dom, 'vdc')['detect_zeroes'] == 'off'
    # vdd runs shareable: writeback there breaks the policy's rule, so nothing is changed on it live.
    assert disks['vdd']['status'] == 'restart_required' and disks['vdd']['applied'] == []
    assert 'a shareable disk must use cache=none or directsync' in disks['vdd']['pending'][0]['why']
    assert top_node(dom, 'vdd')['cache']['direct'] is True
    assert driver(dom.XMLDesc(INACTIVE), 'vdd')['cache'] == 'writeback', 'the configuration got it'
    assert live['status'] == 'restart_required' or live['status'] == 'partially_applied'


# --- F3: the host writes the page cache back before the reopen drains the guest ---------------------

def test_a_reopen_leaves_little_for_its_own_flush(domains, backup_dir, save_dir):
    # A SCSI disk keeps the write cache on under the firmware: 1 GiB written through QEMU stays dirty in
    # the host's page cache (the flusher waits 30 s). Without the host's write-back first, the reopen
    # flushes it while the guest's I/O is drained and QEMU's global lock is held (about 0.6 s here).
    name = domains.name('dirty')
    path = domains.image(name + '.qcow2', size='2G')
    dom = running_domain(domains, [dx.disk(path, 'sda', 'scsi', cache='writeback', io='threads')],
                         name=name, extra_devices=VIRTIO_SCSI)
    qemu_io(dom, SCSI, 'write -P 0x5 0 1G')
    result = tune(URI, backup_dir, save_dir, dom, cache='none', apply='live')
    sda = live_of(result)[1]['sda']
    assert sda['status'] == 'applied_live', sda
    assert sda['reopen_ms'] < 250, (sda['reopen_ms'], sda['host_sync_ms'])
    assert sda['host_sync_ms'] > sda['reopen_ms'], 'the host wrote the data back, not the drained reopen'


# --- F4: a domain that stops during the run ------------------------------------------------------------

def test_a_domain_stopped_during_the_run_is_reported_not_running(domains, backup_dir, save_dir):
    doms = [running_domain(domains, [dx.disk(domains.image('%s.qcow2' % domains.name('img')), 'vda', 'virtio',
                                             cache='writeback', io='threads')], memory_mib=32) for _n in range(2)]
    proc, args = start_module_process('kvm_disk_tune', {
        'uri': URI, 'domains': [d.name() for d in doms], 'cache': 'none', 'io': 'native', 'apply': 'live_or_pause',
        'backup_dir': backup_dir, 'save_dir': save_dir})
    # Saves go one at a time: while the module pauses one domain, the other one waits its turn. It is
    # stopped then, after the module read it.
    wait_for(lambda: any(d.state()[0] != libvirt.VIR_DOMAIN_RUNNING for d in doms), what='the first pause')
    first = [d for d in doms if d.state()[0] != libvirt.VIR_DOMAIN_RUNNING][0]
    victim = [d for d in doms if d is not first][0]
    victim.destroy()
    result = finish_module_process(proc, args)
    assert not result.failed, result
    entries = {d['name']: d for d in result['domains']}
    assert entries[victim.name()]['live']['status'] == 'not_running'
    assert entries[victim.name()]['restart_required'] is True and victim.name() in result['restart_required']
    assert entries[first.name()]['live']['method'] == 'save-restore' and first.isActive()
    assert driver(victim.XMLDesc(INACTIVE), 'vda')['io'] == 'native', 'its next start gets the configuration'


# --- F5: a save whose connection is lost ---------------------------------------------------------------

def _module_client(pid, timeout=30):
    """libvirtd's id of the client connection of process ``pid`` (virt-admin)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = subprocess.run(['virt-admin', 'srv-clients-list', 'libvirtd'], capture_output=True, text=True,
                                 check=True).stdout
        for client in re.findall(r'^\s*(\d+)\s', listing, re.M):
            info = subprocess.run(['virt-admin', 'client-info', 'libvirtd', client], capture_output=True, text=True,
                                  check=False).stdout
            if re.search(r'unix_process_id\s*:\s*%d$' % pid, info, re.M):
                return client
        time.sleep(0.05)
    raise AssertionError('no libvirtd client of pid %d' % pid)


def guest_memory(dom, address, length):
    """Bytes of guest memory read through the monitor (HMP ``xp``)."""
    text = libvirt_qemu.qemuMonitorCommand(dom, 'xp /%dxb 0x%x' % (length, address),
                                           libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
    return bytes(int(b, 16) for line in text.splitlines() for b in line.split(':', 1)[1].split())


@pytest.mark.parametrize('moment', ['during the save', 'after the save'])
def test_a_save_whose_connection_is_lost_keeps_the_guest(domains, backup_dir, save_dir, image_dir, moment):
    """The module's connection goes away while libvirt saves the guest (libvirtd finishes the save), or
    once the guest is saved, before the module restores it (the restore call fails at once): either way
    the guest runs again, unchanged, with its memory and its disk data."""
    # 384 MiB of random data in the guest's memory make the save take seconds.
    data = os.urandom(384 << 20)
    name = domains.name('lost')
    path = domains.image(name + '.qcow2')
    xml = dx.domain(name, [dx.disk(path, 'vda', 'virtio', cache='writeback', io='threads')], memory_mib=512)
    dom = domains.define(with_memory(xml, data, image_dir))
    dom.create()
    loaded = data[:64]
    assert guest_memory(dom, 0x1000000, 64) == loaded
    qemu_io(dom, VIRTIO, 'write -P 0x3c 0 1M')
    proc, args = start_module_process('kvm_disk_tune', {
        'uri': URI, 'domains': [name], 'cache': 'none', 'io': 'native', 'apply': 'live_or_pause',
        'backup_dir': backup_dir, 'save_dir': save_dir})
    client = _module_client(proc.pid)

    def saving():
        try:
            return dom.jobStats().get('operation') == libvirt.VIR_DOMAIN_JOB_OPERATION_SAVE
        except libvirt.libvirtError:
            return False

    def saved():
        # Shut off with the module still running: saved, not yet restored (the module reads and redefines
        # the image's XML first). Polled often: that lasts a fraction of a second.
        return dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF and proc.poll() is None
    wait_for(saving, what='the save')
    if moment == 'after the save':
        deadline = time.monotonic() + 120
        while not saved():
            assert time.monotonic() < deadline and proc.poll() is None, 'never saw the domain saved'
            time.sleep(0.005)
    subprocess.run(['virt-admin', 'client-disconnect', 'libvirtd', client], check=True, capture_output=True)
    result = finish_module_process(proc, args)
    # The guest runs again, from the image the module kept until it could restore it, with its memory
    # and its disk data as they were.
    dom = domains.conn.lookupByName(name)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING, (result.get('msg'), result.warning_messages)
    assert guest_memory(dom, 0x1000000, 64) == loaded
    qemu_io(dom, VIRTIO, 'flush')
    assert host_reads(path, 'qcow2', '0x3c', 0, 1 << 20)
    assert os.listdir(save_dir) == [], 'the image is removed once the domain runs'
    told = (result.get('msg'), result.warning_messages)
    if any('restored unchanged' in w for w in result.warning_messages):
        assert 'cache=\'writeback\'' in dom.XMLDesc(0), told
    else:
        # The connection went while libvirt restored the guest: libvirt finished the restore, with the
        # new XML; the module could not check the new QEMU and says so.
        assert moment == 'after the save' and result.failed, told
        assert 'runs again, restored with the new settings, but they could not be checked' in result['msg'], told
        # (none, or directsync where the guest runs its write cache off: the pause keeps it off)
        drivers = [line.strip() for line in dom.XMLDesc(0).splitlines() if '<driver' in line]
        assert re.fullmatch("<driver name='qemu' type='qcow2' cache='(none|directsync)' io='native'/>", drivers[0]), \
            (told, drivers)


# --- F6: a QEMU process that repeats the domain id and the thread ids of an earlier one ------------------

def test_a_process_that_repeats_the_ids_of_an_earlier_one_is_another_process(tmp_path):
    root = tempfile.mkdtemp(prefix='kvmio-rp-', dir='/var/tmp')
    os.chmod(root, 0o755)                   # QEMU runs as libvirt-qemu under the embedded driver too
    image = os.path.join(root, 'disk.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', image, '16M'], check=True)
    env = dict(os.environ, PYTHONPATH='%s:%s' % (os.environ['KVMIO_TEST_COLLECTIONS'],
                                                 os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

    def step(*argv):
        # Each step is its own process in its own PID namespace: the embedded driver counts domain ids
        # from 1 again, and ns_last_pid picks the thread ids. A shell is the namespace's init: it reaps
        # the QEMU processes libvirt leaves to it (libvirt waits for them to be gone).
        out = subprocess.run(['unshare', '-pf', '--mount-proc', 'sh', '-c', '"$@" & wait $!', 'sh', sys.executable,
                              '-m', 'helpers.repeated_process', root, image] + list(argv), env=env,
                             capture_output=True, text=True, check=True, timeout=180)
        return json.loads(out.stdout.strip().splitlines()[-1])

    try:
        first = step('first')
        assert first['applied'] == ['discard']
        delta = step('measure')['delta']
        # How many pids libvirt and QEMU take before the vCPU thread varies by one or two between starts
        # (threads racing): each miss moves the aim by what it missed by.
        for _attempt in range(8):
            again = step('again', str(first['tid']), str(delta))
            if again['tid'] == first['tid']:
                break
            delta += again['tid'] - first['tid']
        assert (again['id'], again['tid']) == (first['id'], first['tid']), 'the same ids as the first process'
        # A new process, restored from the managed save: QEMU runs discard=ignore again, and the module
        # sees it and applies unmap again (the record of the first process is not trusted).
        assert again['running_discard'] == 'ignore' and again['applied'] == ['discard'], again
        assert again['discarded'], 'a guest discard reaches the image'
    finally:
        subprocess.run(['rm', '-rf', root], check=False)


# --- F7: no command to a domain libvirt does not mark as changed -----------------------------------------

def test_check_mode_and_the_audit_send_nothing_to_a_restored_domain(domains, backup_dir, save_dir, tmp_path):
    path = domains.image(domains.name('img') + '.qcow2')
    dom = running_domain(domains, [dx.disk(path, 'vda', 'virtio', cache='writeback', io='threads')])
    tune(URI, backup_dir, save_dir, dom, discard='unmap', apply='live')
    assert '<kvmio:live' in dom.XMLDesc(0) and tainted(dom)
    # An admin's save/restore: a new QEMU process, untainted, whose live XML still has the record.
    image = str(tmp_path / 'admin.save')
    dom.save(image)
    domains.conn.restore(image)
    os.unlink(image)
    assert '<kvmio:live' in dom.XMLDesc(0) and not tainted(dom)
    planned = tune(URI, backup_dir, save_dir, dom, check=True, discard='unmap', apply='live')
    assert live_of(planned)[0]['read_from'] == 'live_xml' and live_of(planned)[1]['vda']['applied'] == ['discard']
    run_module(kvm_io_info, {'uri': URI, 'domains': [dom.name()], 'inspect_images': False})
    assert not tainted(dom), 'check mode and the audit asked QEMU nothing'


def test_a_run_refused_for_a_block_job_sends_nothing(domains, backup_dir, save_dir):
    name = domains.name('bjob')
    path = domains.image(name + '.qcow2')
    dom = running_domain(domains, [dx.disk(path, 'vda', 'virtio', cache='writeback', io='threads')], name=name)
    copy = os.path.join(domains.image_dir, name + '-copy.qcow2')
    dom.blockCopy('vda', "<disk type='file'><driver type='qcow2'/><source file='%s'/></disk>" % copy, None,
                  libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
    try:
        result = tune(URI, backup_dir, save_dir, dom, cache='none', apply='live')
        live, disks = live_of(result)
        assert live['method'] is None and 'block job' in disks['vda']['pending'][0]['why']
        assert live['taint'] is None and not tainted(dom)
    finally:
        dom.blockJobAbort('vda', 0)


# --- F8: the cache mode reported is the one the guest has ------------------------------------------------

def test_the_reported_cache_is_the_one_the_guest_has(domains):
    dom = running_domain(domains, [dx.disk(domains.image(domains.name('img') + '.qcow2'), 'vda', 'virtio',
                                           cache='writeback', io='threads')])
    firmware_has_set_up_virtio_blk(dom)     # its driver cannot flush: QEMU turned the write cache off
    audit = run_module(kvm_io_info, {'uri': URI, 'domains': [dom.name()], 'inspect_images': False})
    (vda,) = audit['domains'][0]['disks']
    assert (vda['running']['write_cache'], vda['running']['guest_write_cache']) == (True, False)
    # What a migration's --xml or a restore must give it, to leave the guest as it is.
    assert vda['running']['cache'] == 'writethrough'


# --- F10: the pause of a save that fails ---------------------------------------------------------------

def with_memory(xml, data, directory):
    """``xml`` with ``data`` loaded into the guest's memory at 16 MiB by QEMU's loader device: a save
    image then holds that much, and its save takes that long."""
    memory = os.path.join(directory, 'memory-%d.bin' % len(data))
    with open(memory, 'wb') as handle:
        handle.write(data)
    os.chmod(memory, 0o644)
    return xml.replace("<domain type='qemu'>", "<domain type='qemu' xmlns:qemu='%s'>" % QEMU_NS).replace(
        '</domain>', "<qemu:commandline><qemu:arg value='-device'/><qemu:arg value='loader,file=%s,addr=0x1000000,"
        "force-raw=on'/></qemu:commandline></domain>" % memory)


def test_a_save_that_fails_reports_the_pause_it_caused(domains, backup_dir, tmp_path):
    small = tempfile.mkdtemp(prefix='kvmio-small-', dir='/var/tmp')
    # Room for the free-space check (memory + 64 MiB), not for the image once the filler has run.
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=136m,mode=700', 'tmpfs', small], check=True)
    try:
        name = domains.name('nospc')
        path = domains.image(name + '.qcow2')
        xml = dx.domain(name, [dx.disk(path, 'vda', 'virtio', cache='writeback', io='threads')], memory_mib=64)
        dom = domains.define(with_memory(xml, os.urandom(40 << 20), domains.image_dir))
        dom.create()
        save_dir = os.path.join(small, 'save')
        stop = threading.Event()

        def fill_when_the_save_begins():
            while not stop.is_set():
                if os.path.isdir(save_dir) and os.listdir(save_dir):
                    # All the free space at once (one fallocate), before libvirt writes much of the image:
                    # a write loop was outrun by the save on a loaded machine.
                    fd = os.open(os.path.join(small, 'filler'), os.O_WRONLY | os.O_CREAT, 0o600)
                    try:
                        usage = os.statvfs(small)
                        os.posix_fallocate(fd, 0, usage.f_bavail * usage.f_frsize)
                        os.lseek(fd, 0, os.SEEK_END)
                        while True:
                            os.write(fd, b'\0' * 4096)
                    except OSError:
                        return
                    finally:
                        os.close(fd)
                time.sleep(0.0005)
        filler = threading.Thread(target=fill_when_the_save_begins)
        filler.start()
        running_id = domain_id(dom)
        result = tune(URI, backup_dir, save_dir, dom, cache='none', io='native', apply='live_or_pause')
        stop.set()
        filler.join()
        live, _disks = live_of(result)
        assert domain_id(dom) == running_id and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING, live
        assert 'No space left on device' in live['error'], live
        assert live['pause']['pause_seconds'] > 0, 'the vCPUs were stopped during the attempt'
        assert os.listdir(save_dir) == []
    finally:
        subprocess.run(['umount', '-l', small], check=False)
        os.rmdir(small)


# --- F11: one libvirt, two spellings -----------------------------------------------------------------

def test_two_spellings_of_one_libvirt_take_one_lock(domains, backup_dir):
    dom = domains.define(dx.domain(domains.name('lock'), [dx.disk('/var/tmp/absent.qcow2', 'vda', 'virtio')]))
    with HostLock('qemu:///system', 5):       # what a run on qemu:///system holds
        result = run_module(kvm_disk_tune, {'uri': 'qemu+unix:///system', 'lock_timeout': 1, 'domains': [dom.name()],
                                            'backup_dir': backup_dir, 'cache': 'none'}, check_mode=True)
    assert result.failed and 'another kvmio.tuning run' in result['msg'], result


# --- F13: check mode predicts what a real run does about a pause ------------------------------------------

def test_check_mode_predicts_no_pause_where_a_real_run_refuses_it(domains, backup_dir, tmp_path):
    path = domains.image(domains.name('img') + '.qcow2')
    dom = running_domain(domains, [dx.disk(path, 'vda', 'virtio', cache='writeback', io='threads')])
    open_dir, theirs = tmp_path / 'open', tmp_path / 'theirs'
    open_dir.mkdir()
    theirs.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(open_dir, 0o755)
    os.chown(theirs, 65534, 65534)
    for save_dir, why in ((open_dir, 'must belong to uid 0 with mode 0700'),
                          (theirs / 'kvmio' / 'save', 'is owned by nobody')):
        planned = tune(URI, backup_dir, str(save_dir), dom, check=True, cache='none', io='native',
                       apply='live_or_pause')
        live, _disks = live_of(planned)
        assert live['predicted'] and live['method'] == 'blockdev-reopen', live
        assert why in live['error'], live
        real = tune(URI, backup_dir, str(save_dir), dom, cache='none', io='native', apply='live_or_pause')
        assert live_of(real)[0]['method'] == 'blockdev-reopen' and why in live_of(real)[0]['error']
        tune(URI, backup_dir, str(save_dir), dom, cache='writeback', io='threads', apply='live')
    assert os.listdir(open_dir) == [] and os.listdir(theirs) == [], 'nothing was created'
