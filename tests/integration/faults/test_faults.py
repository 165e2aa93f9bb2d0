# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults with the real thing: libvirtd killed, backups impossible, a convert SIGKILLed, two runs at once,
a domain edited under the module's feet, hostile names and paths. Nothing may be lost or half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import libvirt
import pytest
from lxml import etree

from ansible_collections.kvmio.tuning.plugins.module_utils._define import define_plans
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_plan import TunePolicy, plan_domain
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import DiskSettings
from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import canonical
from ansible_collections.kvmio.tuning.plugins.module_utils._errors import ApplyError
from ansible_collections.kvmio.tuning.plugins.module_utils._libvirt import LibvirtClient
from ansible_collections.kvmio.tuning.plugins.modules import kvm_disk_tune, qcow2_create
from helpers import domain_xml as dx
from helpers import qemu_img
from helpers.modules import finish_module_process, run_module, start_module_process

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
URI = 'qemu:///system'
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def caches(dom):
    root = etree.fromstring(dom.XMLDesc(INACTIVE).encode())
    return [d.find('driver').get('cache') for d in root.findall('devices/disk')]


def many_domains(factory, count, prefix):
    doms = []
    for index in range(count):
        name = '%s-%03d' % (prefix, index)
        doms.append(factory.define(dx.domain(name, [dx.disk('/var/tmp/%s-absent.qcow2' % name, 'vda', 'virtio')])))
    return doms


def test_libvirtd_killed_in_the_middle_of_a_batch(system_domains, tmp_path):
    prefix = system_domains.name('batch')
    doms = many_domains(system_domains, 150, prefix)
    originals = {d.name(): canonical(d.XMLDesc(INACTIVE)) for d in doms}
    backups = tmp_path / 'backups'
    args = {'uri': URI, 'domains': [prefix + '-*'], 'cache': 'writeback', 'io': 'threads',
            'backup_dir': str(backups), 'probe_storage': False}
    started = time.time()
    proc, args_file = start_module_process('kvm_disk_tune', args)
    # Kill libvirtd once it has stored a few of the new definitions (its config files change).
    configs = ['/etc/libvirt/qemu/%s.xml' % name for name in originals]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stored = sum(1 for c in configs if os.path.exists(c) and os.stat(c).st_mtime > started + 0.0)
        if stored >= 3:
            break
        time.sleep(0.002)
    subprocess.run(['pkill', '-KILL', '-x', 'libvirtd'], check=False)
    result = finish_module_process(proc, args_file)
    subprocess.run([os.path.join(REPO, 'tools', 'start-libvirt')], check=True)
    assert result.failed, 'the run must notice that libvirt went away'
    assert 'libvirt' in result['msg'] and ('lost the connection' in result['msg'] or 'refused' in result['msg'])
    assert set(result['defined']) <= set(originals) and len(result['backups']) >= len(result['defined'])
    assert 0 < len(result['defined']) < len(originals), 'the kill landed in the middle of the batch'
    conn = libvirt.open(URI)
    try:
        states = {}
        for name, original in originals.items():
            now = conn.lookupByName(name).XMLDesc(INACTIVE)
            tuned = 'cache="writeback"' in canonical(now)
            assert tuned or canonical(now) == original, '%s is neither old nor new' % name
            states[name] = tuned
        assert all(states[name] for name in result['defined'])
    finally:
        conn.close()
    rerun = run_module(kvm_disk_tune, args)
    assert not rerun.failed, rerun.get('msg')
    assert sorted(d['name'] for d in rerun['domains'] if d['changed']) == sorted(n for n, t in states.items() if not t)


def test_libvirt_down_before_the_run_changes_nothing(tmp_path):
    # A process of its own, as on a host: libvirt's message is in the result once, not also on stderr.
    proc, args_file = start_module_process('kvm_disk_tune', {
        'uri': 'qemu+unix:///system?socket=/run/kvmio-no-such.sock', 'backup_dir': str(tmp_path / 'b')})
    result = finish_module_process(proc, args_file)
    assert result.failed and 'cannot connect to libvirt' in result['msg'] and '/run/kvmio-no-such.sock' in result['msg']
    assert result.stderr == ''
    assert not (tmp_path / 'b').exists()


@pytest.mark.parametrize('make_unwritable', ['file-in-the-way', 'full-filesystem'])
def test_no_define_without_a_backup(system_domains, tmp_path, make_unwritable):
    name = system_domains.name('nobackup')
    dom = system_domains.define(dx.domain(name, [dx.disk(system_domains.image(name + '.qcow2'), 'vda', 'virtio')]))
    original = dom.XMLDesc(INACTIVE)
    if make_unwritable == 'file-in-the-way':
        (tmp_path / 'blocker').write_text('not a directory')
        backup_dir = tmp_path / 'blocker' / 'backups'
    else:
        backup_dir = tmp_path / 'full'
        backup_dir.mkdir()
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4k', 'tmpfs', str(backup_dir)], check=True)
        (backup_dir / 'filler').write_bytes(b'x' * 4096)
    try:
        result = run_module(kvm_disk_tune, {'uri': URI, 'domains': [name], 'backup_dir': str(backup_dir)})
    finally:
        if make_unwritable == 'full-filesystem':
            subprocess.run(['umount', str(backup_dir)], check=True)
    assert result.failed
    assert result['msg'].startswith('cannot back up the XML of domain %s to %s' % (name, backup_dir))
    assert result['msg'].endswith('nothing was defined for it')
    assert dom.XMLDesc(INACTIVE) == original


def test_convert_killed_midway_leaves_the_original_and_the_next_run_completes(tmp_path):
    path = tmp_path / 'big.qcow2'
    qemu_img.create(str(path), '1G')
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 0 768M', str(path)], check=True,
                   capture_output=True)
    checksum = qemu_img.guest_sha256(path)
    proc, args_file = start_module_process('qcow2_create', {'path': str(path), 'convert': True,
                                                            'preallocation': 'full'})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any('.kvmio-' in f for f in os.listdir(tmp_path)):
        time.sleep(0.01)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)          # the module and its qemu-img child, as a crash would
    proc.wait()
    os.unlink(args_file)
    leftovers = [f for f in os.listdir(tmp_path) if '.kvmio-' in f]
    assert leftovers, 'the kill came while the temporary copy was being written'
    assert qemu_img.info(str(path))['format'] == 'qcow2' and qemu_img.guest_sha256(path) == checksum
    result = run_module(qcow2_create, {'path': str(path), 'convert': True, 'preallocation': 'metadata'})
    assert not result.failed, result
    assert result['cleaned'] == [str(tmp_path / leftovers[0])]
    assert qemu_img.guest_sha256(path) == checksum and result['action'] == 'converted'
    assert [f for f in os.listdir(tmp_path) if '.kvmio-' in f] == []


def test_two_runs_at_once_take_turns_and_lose_no_update(system_domains, tmp_path):
    prefix = system_domains.name('race')
    doms = many_domains(system_domains, 40, prefix)
    common = {'uri': URI, 'domains': [prefix + '-*'], 'probe_storage': False, 'backup_dir': str(tmp_path / 'b')}
    first = start_module_process('kvm_disk_tune', dict(common, cache='writeback', io='keep'))
    second = start_module_process('kvm_disk_tune', dict(common, cache='keep', io='keep', discard='unmap'))
    results = [finish_module_process(*first), finish_module_process(*second)]
    assert not any(r.failed for r in results), [r.get('msg') for r in results]
    for dom in doms:
        driver = etree.fromstring(dom.XMLDesc(INACTIVE).encode()).find('devices/disk/driver')
        assert (driver.get('cache'), driver.get('discard')) == ('writeback', 'unmap'), dom.name()


def test_lock_timeout_fails_clearly(system_domains, tmp_path):
    from ansible_collections.kvmio.tuning.plugins.module_utils._lock import HostLock
    with HostLock(URI, 1):
        result = run_module(kvm_disk_tune, {'uri': URI, 'lock_timeout': 1, 'backup_dir': str(tmp_path / 'b')})
    assert result.failed
    assert result['msg'].startswith('another kvmio.tuning run (pid %d) has been working on %s for more than 1 s'
                                    % (os.getpid(), URI))


def test_a_domain_edited_between_plan_and_define_is_not_overwritten(system_domains, tmp_path):
    name = system_domains.name('edited')
    system_domains.define(dx.domain(name, [dx.disk(system_domains.image(name + '.qcow2'), 'vda', 'virtio')]))
    with LibvirtClient(URI) as client:
        dom = client.lookup(name)
        plan = plan_domain(client.inactive_xml(dom), TunePolicy(settings=DiskSettings(cache='writeback', io='keep')))
        assert plan.changed
        # Someone else edits the domain now (another tool, an admin with virsh edit).
        edited = client.inactive_xml(dom).replace('<memory unit', '<description>edited by hand</description>'
                                                  '\n  <memory unit', 1)
        client.define(edited, name)
        with pytest.raises(ApplyError) as err:
            define_plans(client, {name: dom}, [plan], str(tmp_path / 'b'))
        assert err.value.msg.startswith('domain %s changed since this run read it' % name)
        now = client.inactive_xml(client.lookup(name))
        assert 'edited by hand' in now and "cache='writeback'" not in now


def test_overlapping_defines_stop_at_an_edited_domain_and_put_back_what_they_did(system_domains, tmp_path):
    # Defines overlap (4 at a time): the edited domain stops every define not yet begun; the domains
    # already defined are defined again from their backups (verified), the error names them, and every
    # domain but the edited one holds its original XML again.
    prefix = system_domains.name('overlap')
    doms = many_domains(system_domains, 24, prefix)
    edited_name = doms[9].name()
    policy = TunePolicy(settings=DiskSettings(cache='writeback', io='keep'))
    with LibvirtClient(URI) as client:
        handles = {d.name(): client.lookup(d.name()) for d in doms}
        plans = [plan_domain(client.inactive_xml(handles[n]), policy) for n in sorted(handles)]
        originals = {p.name: canonical(p.source) for p in plans}
        edited = plans[9].source.replace('<memory unit', '<description>edited by hand</description>\n  <memory unit', 1)
        client.define(edited, edited_name)
        with pytest.raises(ApplyError) as err:
            define_plans(client, handles, plans, str(tmp_path / 'b'))
        details = err.value.details
        assert details['failed_domain'] == edited_name and edited_name not in details['rolled_back']
        assert len(details['backups']) == len(plans), 'every backup is written before the first define'
        assert details['defined'] == [] and details['rollback_failed'] == {}
        assert 0 < len(details['rolled_back']) < len(plans) - 1, 'defines not yet begun were not started'
        assert err.value.msg.endswith('Nothing was changed: the %d domain(s) this run had defined before it stopped '
                                      'were defined again from the backups it wrote, and verified: %s.'
                                      % (len(details['rolled_back']), ', '.join(details['rolled_back'])))
        for name in handles:
            now = canonical(client.inactive_xml(client.lookup(name)))
            if name == edited_name:
                assert 'edited by hand' in now and 'cache="writeback"' not in now
            else:
                assert now == originals[name], '%s was not put back' % name


HOSTILE_NAMES = ["vm with spaces", "quote'n\"dq", "ünïcødé-vm-ß", "semi;rm -rf ~;$(touch pwned)`id`"]


@pytest.mark.parametrize('hostile', HOSTILE_NAMES)
def test_hostile_domain_names_and_image_paths(system_domains, tmp_path, hostile):
    safe = hostile.replace('/', '_')
    name = 'kvmio-test-%s-%s' % (safe, os.urandom(3).hex())
    system_domains.names.append(name)
    image = str(tmp_path / ('%s.qcow2' % safe))
    created = run_module(qcow2_create, {'path': image, 'size': '16M'})
    assert not created.failed, created
    link = str(tmp_path / ('link to %s.qcow2' % safe))
    os.symlink(image, link)
    xml = dx.domain(name, [dx.disk(link, 'vda', 'virtio')])
    system_domains.conn.defineXML(xml)
    result = run_module(kvm_disk_tune, {'uri': URI, 'domains': [name], 'backup_dir': str(tmp_path / 'b')})
    assert not result.failed, result
    disk = result['domains'][0]['disks'][0]
    assert result['storage'][link]['chain'] == [os.path.realpath(image)] and disk['after']['cache'] == 'none'
    assert os.path.basename(result['backups'][0]).startswith(name + '.')
    assert not os.path.exists('pwned') and not (tmp_path / 'pwned').exists()
    assert run_module(kvm_disk_tune, {'uri': URI, 'domains': [name], 'backup_dir': str(tmp_path / 'b')})['changed'] \
        is False


def test_backing_chain_with_a_missing_file_is_reported_not_guessed(system_domains, tmp_path):
    base = qemu_img.create(str(tmp_path / 'base.qcow2'), '16M')
    top = str(tmp_path / 'top.qcow2')
    qemu_img.create(top, None, backing=base)
    os.unlink(base)
    name = system_domains.name('chain')
    system_domains.define(dx.domain(name, [dx.disk(top, 'vda', 'virtio')]))
    explicit = run_module(kvm_disk_tune, {'uri': URI, 'domains': [name], 'backup_dir': str(tmp_path / 'b')})
    assert not explicit.failed
    assert explicit['domains'][0]['disks'][0]['after']['cache'] == 'writeback'
    assert any('backing file %s of ' % base in w and ' is missing' in w for w in explicit.warning_messages)


def test_paths_outside_allowed_roots_are_refused(tmp_path):
    pool = tmp_path / 'pool'
    pool.mkdir()
    outside = tmp_path / 'elsewhere'
    outside.mkdir()
    escape = pool / 'escape.qcow2'
    escape.symlink_to(outside / 'target.qcow2')
    for path in (outside / 'a.qcow2', escape, pool / '..' / 'elsewhere' / 'b.qcow2'):
        result = run_module(qcow2_create, {'path': str(path), 'size': '16M', 'allowed_roots': [str(pool)]})
        assert result.failed and 'is outside allowed_roots (%s)' % pool in result['msg'], result['msg']
    assert os.listdir(outside) == []
    inside = run_module(qcow2_create, {'path': str(pool / 'ok.qcow2'), 'size': '16M', 'allowed_roots': [str(pool)]})
    assert not inside.failed and inside['changed']
