# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 14, the define path and xml_path, as the attacks and accidents really happen:

- W1: a plan libvirt refuses stops the whole run before the first define (the define check);
- W2: a bus change never moves a disk libvirt refuses on the new bus;
- W6/W7 and the rest of xml_path: overrides as in libvirt mode, links planted by another user,
  FIFOs and devices, read-only and full filesystems, and a template in git that gets a diff only
  where a setting changed.

Against libvirtd (qemu:///system, domains named kvmio-test-*) and real files; the define check
itself runs libvirt's embedded driver in its own process.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
import uuid

import libvirt
import pytest
from lxml import etree

from ansible_collections.kvmio.tuning.plugins.module_utils._backup_origin import with_origin
from ansible_collections.kvmio.tuning.plugins.module_utils._define_check import ROOT_CACHE_DIR, check_defines
from ansible_collections.kvmio.tuning.plugins.module_utils._trusted_files import UntrustedPath, private_directory
from ansible_collections.kvmio.tuning.plugins.module_utils._errors import PlanError
from ansible_collections.kvmio.tuning.plugins.modules import domain_restore, kvm_disk_tune
from helpers import domain_xml as dx
from helpers.corpus import CORPUS, corpus_documents
from helpers.modules import finish_module_process, run_module, start_module_process

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
URI = 'qemu:///system'
NOBODY = 65534
GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'unit', 'plugins', 'module_utils',
                      'golden')
REFUSAL = "io='native' needs either no disk cache or directsync cache mode"


def tune(backup_dir, check=False, diff=False, **options):
    args = {'uri': URI, 'backup_dir': str(backup_dir)}
    args.update(options)
    return run_module(kvm_disk_tune, args, check_mode=check, diff=diff)


def as_nobody(*argv):
    subprocess.run(['setpriv', '--reuid=%d' % NOBODY, '--regid=%d' % NOBODY, '--clear-groups'] + list(argv),
                   check=True)


def nobody_dir():
    """A directory under /var/tmp that belongs to the unprivileged user (as their home would)."""
    path = tempfile.mkdtemp(prefix='kvmio-nobody-', dir='/var/tmp')
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o755)
    return path


def network_disk(dev, cache=None, io=None):
    driver = "<driver name='qemu' type='raw'%s%s/>" % (" cache='%s'" % cache if cache else '',
                                                       " io='%s'" % io if io else '')
    return ("<disk type='network' device='disk'>%s<source protocol='nbd' name='export'><host name='127.0.0.1' "
            "port='10809'/></source><target dev='%s' bus='virtio'/></disk>" % (driver, dev))


# --- W1: nothing changes when libvirt would refuse any plan ------------------------------------

def test_a_batch_where_libvirt_refuses_the_sixth_plan_changes_nothing_and_names_it(system_domains, tmp_path):
    """Six domains; the sixth has a network disk with cache=none io=native, which the default policy
    planned as writeback+native (issue 14 W1; the rule table now plans writeback+threads). While a
    planner makes a plan libvirt refuses, the run must stop before the first define, check mode must
    say so too, and nothing may change; once it does not, the whole run goes through. A run that
    defines some domains and then fails is never right. (The deterministic batch refusal is the
    domain_restore test below: a backup is passed to libvirt as it is.)"""
    factory = system_domains
    prefix = factory.name('w1')
    names = ['%s-%d' % (prefix, i) for i in range(6)]
    for name in names[:5]:
        kind = 'kvm' if name.endswith('-2') else 'qemu'     # both types, on a host without usable KVM
        factory.define(dx.domain(name, [dx.disk(factory.image(name + '.qcow2'), 'vda', 'virtio')])
                       .replace("type='qemu'", "type='%s'" % kind, 1))
    factory.define(dx.domain(names[5], [dx.disk(factory.image(names[5] + '.qcow2'), 'vda', 'virtio'),
                                        network_disk('vdb', 'none', 'native')]))
    originals = {n: factory.conn.lookupByName(n).XMLDesc(INACTIVE) for n in names}
    backups = tmp_path / 'backups'
    checked = tune(backups, check=True, domains=[prefix + '-*'])
    unchecked = tune(backups, check=True, domains=[prefix + '-*'], define_check=False)
    assert not unchecked.failed and unchecked['define_check'] == {
        'checked': [], 'unchecked': {name: 'define_check=false' for name in names}}
    real = tune(backups, domains=[prefix + '-*'])
    if real.failed:
        assert real['msg'].startswith('libvirt refuses the planned XML of %s, so nothing was changed' % names[5])
        assert '%s: unsupported configuration: %s' % (names[5], REFUSAL) in real['msg']
        assert real['refused'] == {names[5]: 'unsupported configuration: ' + REFUSAL}
        assert not real.get('defined'), 'defined before it stopped: %s' % real.get('defined')
        assert checked.failed and checked['msg'] == real['msg'], 'check mode must report the refusal'
        assert {n: factory.conn.lookupByName(n).XMLDesc(INACTIVE) for n in names} == originals
        assert not backups.exists()
    else:
        assert not checked.failed and checked['define_check']['checked'] == names
        assert real['define_check']['checked'] == names and real['changed']


def test_restoring_a_batch_where_libvirt_refuses_one_backup_restores_nothing(system_domains, tmp_path):
    """The same guarantee for domain_restore: a hand-edited backup libvirt refuses stops the batch."""
    factory = system_domains
    prefix = factory.name('w1r')
    paths, originals = [], {}
    backup_files = tmp_path / 'files'
    backup_files.mkdir(mode=0o700)
    for index in range(6):
        name = '%s-%d' % (prefix, index)
        dom = factory.define(dx.domain(name, [dx.disk(factory.image(name + '.qcow2'), 'vda', 'virtio')]))
        originals[name] = dom.XMLDesc(INACTIVE)
        cache = 'writeback' if index < 5 else "writeback' io='native"
        path = backup_files / ('%s.xml' % name)
        # A backup this collection wrote (it records its libvirt), edited by hand.
        path.write_text(with_origin(originals[name].replace("<driver name='qemu' type='qcow2'/>",
                                                            "<driver name='qemu' type='qcow2' cache='%s'/>" % cache),
                                    URI))
        os.chmod(path, 0o600)
        paths.append(str(path))
    args = {'uri': URI, 'backups': paths, 'backup_dir': str(tmp_path / 'b')}
    checked = run_module(domain_restore, args, check_mode=True)
    real = run_module(domain_restore, args)
    assert real.failed and checked.failed and checked['msg'] == real['msg']
    assert real['msg'].startswith('libvirt refuses the planned XML of %s-5, so nothing was changed' % prefix)
    assert REFUSAL in real['msg'] and not real.get('defined')
    assert {n: factory.conn.lookupByName(n).XMLDesc(INACTIVE) for n in originals} == originals


def test_scsi_queues_libvirt_or_qemu_cannot_take_are_refused_at_plan_time(tmp_path):
    """Found by the define check: 2**32 queues passed the plan and libvirt refused it at define time
    (and QEMU 7.2 refuses more than 1022 at start). Now the plan refuses both, naming the option."""
    template = tmp_path / 'web.xml'
    original = write_template(template)
    for queues in ('4294967296', '1023'):
        result = tune(tmp_path / 'b', xml_path=str(template), probe_storage=False, bus='scsi', scsi_queues=queues,
                      convert_boot_disk=True, cache='keep', io='keep')
        assert result.failed and result['msg'] == (
            "scsi_queues must be a number from 1 to 1022 (QEMU's limit for virtio-scsi) or 'auto', not '%s'; nothing "
            "was changed" % queues)
        assert template.read_text() == original
    fine = tune(tmp_path / 'b', xml_path=str(template), probe_storage=False, bus='scsi', scsi_queues='1022',
                convert_boot_disk=True, cache='keep', io='keep')
    assert not fine.failed and fine['define_check']['checked'] == ['web-template']


def test_domains_naming_absent_pools_networks_secrets_filters_and_devices_pass_the_check(system_domains, tmp_path):
    """What an empty embedded root lacks is not looked up at define time: no false refusal."""
    factory = system_domains
    name = factory.name('refs')
    extra = ("<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='kvmio-absent-pool' "
             "volume='v1'/><target dev='vdb' bus='virtio'/></disk>"
             "<disk type='network' device='disk'><driver name='qemu' type='raw'/><auth username='admin'><secret "
             "type='ceph' usage='kvmio-absent-secret'/></auth><source protocol='rbd' name='pool/image'><host "
             "name='192.0.2.1' port='6789'/></source><target dev='vdc' bus='virtio'/></disk>")
    devices = ("<interface type='network'><source network='kvmio-absent-net'/><model type='virtio'/><filterref "
               "filter='kvmio-absent-filter'/></interface>"
               "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x42' "
               "slot='0x1f' function='0x7'/></source></hostdev>")
    factory.define(dx.domain(name, [dx.disk(factory.image(name + '.qcow2'), 'vda', 'virtio'), extra],
                             extra_devices=devices))
    result = tune(tmp_path / 'b', domains=[name], cache='writeback', io='threads')
    assert not result.failed, result['msg']
    assert result['define_check'] == {'checked': [name], 'unchecked': {}}
    assert "cache='writeback'" in factory.conn.lookupByName(name).XMLDesc(INACTIVE)


def test_the_check_is_private_cached_and_never_touches_the_real_libvirt(system_domains):
    name = system_domains.name('private')
    xml = dx.domain(name, [dx.disk('/var/tmp/%s.qcow2' % name, 'vda', 'virtio')]).replace(
        '<name>', '<uuid>%s</uuid><name>' % uuid.uuid4(), 1)
    first = check_defines([(name, xml, xml.replace('type="qcow2"', 'type="qcow2" cache="none"'))])
    started = time.monotonic()
    second = check_defines([(name, xml, xml)])
    warm = time.monotonic() - started
    assert first.checked == [name] and second.checked == [name]
    assert warm < 3, 'the capabilities cache is not reused (%.1f s)' % warm
    with pytest.raises(libvirt.libvirtError):
        system_domains.conn.lookupByName(name)
    assert not os.path.exists('/etc/libvirt/qemu/%s.xml' % name)
    for path in (os.path.dirname(ROOT_CACHE_DIR), ROOT_CACHE_DIR):
        info = os.lstat(path)
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o700, path
    assert os.listdir(ROOT_CACHE_DIR) == ['libvirt-cache'], 'each run removes its embedded root'


def test_a_cache_directory_another_user_controls_is_not_used(tmp_path):
    home = tempfile.mkdtemp(prefix='kvmio-cache-', dir='/var/tmp')
    os.chmod(home, 0o755)
    try:
        os.mkdir(os.path.join(home, 'cache'))
        os.chown(os.path.join(home, 'cache'), NOBODY, NOBODY)
        os.chmod(os.path.join(home, 'cache'), 0o777)
        os.symlink(os.path.join(home, 'cache'), os.path.join(home, 'link'))
        os.lchown(os.path.join(home, 'link'), NOBODY, NOBODY)
        # The one rule for private directories (_trusted_files; second review of issue 14, F9).
        for name, problem in (('link', 'the link %s/link is owned by nobody (uid %d)' % (home, NOBODY)),
                              ('cache', '%s/cache is owned by nobody (uid %d)' % (home, NOBODY))):
            with pytest.raises(UntrustedPath) as refused:
                private_directory(os.path.join(home, name, 'kvmio'), "the define check's cache")
            assert refused.value.details['untrusted'].startswith(problem), refused.value.details
        xml = dx.domain('kvmio-test-planted', [dx.disk('/var/tmp/planted.qcow2', 'vda', 'virtio')])
        check = check_defines([('kvmio-test-planted', xml, xml)], cache_dir=os.path.join(home, 'cache', 'kvmio'),
                              redefine=False)
        assert check.checked == ['kvmio-test-planted']
        assert check.notes and 'not using the cache directory' in check.notes[0], check.notes
        assert os.listdir(os.path.join(home, 'cache')) == [], 'nothing is written where another user can write'
    finally:
        shutil.rmtree(home)


def test_a_stuck_check_times_out_and_leaves_no_process(tmp_path):
    """An emulator that never answers libvirt's probe: the check fails after its timeout and kills
    every process it started."""
    fake = tmp_path / 'qemu-system-x86_64'
    fake.write_text('#!/bin/sh\nexec sleep 600\n')
    fake.chmod(0o755)
    xml = dx.domain('kvmio-test-stuck', []).replace('/usr/bin/qemu-system-x86_64', str(fake))
    with pytest.raises(PlanError, match=r'did not finish within 3 s, so nothing was changed'):
        check_defines([('kvmio-test-stuck', xml, xml)], timeout=3)
    time.sleep(0.5)
    left = [pid for pid in os.listdir('/proc') if pid.isdigit() and _cmdline_has(pid, str(fake))]
    assert not left, 'processes left behind: %s' % left


def _cmdline_has(pid, text):
    try:
        with open('/proc/%s/cmdline' % pid, 'rb') as handle:
            return text.encode() in handle.read()
    except OSError:
        return False


# --- W2: disks libvirt refuses on the new bus stay where they are -----------------------------

def test_bus_scsi_leaves_disks_that_cannot_move_and_moves_the_rest(system_domains, tmp_path):
    factory = system_domains
    name = factory.name('w2')
    images = {dev: factory.image('%s-%s.qcow2' % (name, dev)) for dev in ('vda', 'vdc', 'vdd', 'hdb', 'sda')}
    disks = [dx.disk(images['vda'], 'vda', 'virtio'),
             "<disk type='vhostuser' device='disk'><driver name='qemu' type='raw'/><source type='unix' "
             "path='/run/kvmio-test-vhost.sock'><reconnect enabled='yes' timeout='10'/></source>"
             "<target dev='vdb' bus='virtio'/></disk>",
             dx.disk(images['vdc'], 'vdc', 'virtio').replace('type="qcow2"', 'type="qcow2" iommu="on"'),
             dx.disk(images['vdd'], 'vdd', 'virtio', extra="<acpi index='5'/>"),
             dx.disk(images['hdb'], 'hdb', 'ide', extra="<geometry cyls='16' heads='16' secs='63' trans='lba'/>"),
             dx.disk(images['sda'], 'sda', 'sata')]
    memory = "\n  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"
    dom = factory.define(dx.domain(name, disks, metadata=memory))
    result = tune(tmp_path / 'b', domains=[name], bus='scsi', cache='keep', io='keep')
    assert not result.failed, result['msg']
    warnings = '\n'.join(result.warning_messages)
    for dev, bus, why in (('vdb', 'virtio', 'a vhostuser disk exists only as a virtio-blk device'),
                          ('vdc', 'virtio', 'its driver sets iommu=on'),
                          ('vdd', 'virtio', 'it has ACPI index 5'),
                          ('hdb', 'ide', 'its geometry sets the BIOS translation trans=lba')):
        assert '%s: disk %s stays on bus %s: %s' % (name, dev, bus, why) in warnings, warnings
    root = etree.fromstring(dom.XMLDesc(INACTIVE).encode())
    buses = {d.find('source').get('file') or 'vhost-user': d.find('target').get('bus')
             for d in root.findall('devices/disk')}
    assert buses == {images['vda']: 'virtio', 'vhost-user': 'virtio', images['vdc']: 'virtio',
                     images['vdd']: 'virtio', images['hdb']: 'ide', images['sda']: 'scsi'}
    # Disks with settings that do move (CHS geometry without translation, block sizes, serial and
    # WWN, a transient overlay, a rotation rate): libvirt takes them and QEMU starts with them.
    os.chmod(factory.image_dir, 0o755)      # QEMU runs as libvirt-qemu under libvirtd
    for bus in ('scsi', 'virtio'):
        other = factory.name('w2' + bus)
        movable = [dx.disk(factory.image(other + '-root.qcow2'), 'vda', 'virtio'),
                   dx.disk(factory.image(other + '-g.qcow2'), 'hdb', 'ide',
                           extra="<geometry cyls='16' heads='16' secs='63'/><serial>s1</serial>"
                                 "<wwn>5000c50015ea71ad</wwn>"),
                   dx.disk(factory.image(other + '-b.qcow2'), 'sda', 'sata',
                           extra="<blockio logical_block_size='512' physical_block_size='4096'/>").replace(
                               "bus='sata'", "bus='sata' rotation_rate='1'"),
                   dx.disk(factory.image(other + '-t.qcow2'), 'hdc', 'ide', extra='<transient/>')]
        moved = factory.define(dx.domain(other, movable))
        result = tune(tmp_path / 'b', domains=[other], bus=bus, cache='keep', io='keep')
        assert not result.failed, result['msg']
        assert result['changed'] and result['define_check']['checked'] == [other], result['define_check']
        assert [c['after'] for c in result['domains'][0]['changes'] if c['setting'] == 'bus'] == [bus] * 3
        moved.create()
        try:
            time.sleep(0.3)
            assert moved.isActive()
        finally:
            moved.destroy()


def test_a_template_moved_to_scsi_keeps_clear_of_its_unaddressed_luns(system_domains, tmp_path):
    """A template's LUNs get their SCSI address from their name when the file is defined."""
    factory = system_domains
    name = factory.name('luns')
    luns = ["<disk type='block' device='lun'><driver name='qemu' type='raw'/><source dev='/dev/kvmio-absent-%s'/>"
            "<target dev='sd%s' bus='scsi'/></disk>" % (letter, letter) for letter in 'ab']
    template = tmp_path / 'template.xml'
    template.write_text(dx.domain(name, [dx.disk(factory.image(name + '.qcow2'), 'vda', 'virtio'),
                                         dx.disk(factory.image(name + '-d.qcow2'), 'vdb', 'virtio')] + luns,
                                  extra_devices="<controller type='scsi' index='0' model='virtio-scsi'/>"))
    result = tune(tmp_path / 'b', xml_path=str(template), bus='scsi', convert_boot_disk=True, probe_storage=False,
                  cache='keep', io='keep')
    assert not result.failed, result['msg']
    assert result['define_check'] == {'checked': [name], 'unchecked': {}}
    factory.define(template.read_text())     # libvirt accepts the file as written


def test_bus_conversions_libvirt_accepted_before_are_accepted_after_on_the_whole_corpus():
    """Every corpus domain the embedded driver accepts, moved to virtio-scsi and to virtio-blk, must
    still be accepted (one check of ~1,400 documents)."""
    from ansible_collections.kvmio.tuning.plugins.module_utils._disk_plan import TunePolicy, plan_domain
    from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import DiskSettings
    from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import parse_domain, to_text
    documents = corpus_documents(valid=None, positive=True)
    if not documents:
        pytest.skip('no corpus at %s' % CORPUS)
    items, origin = [], {}
    for relpath in documents:
        with open(os.path.join(CORPUS, relpath), encoding='utf-8') as handle:
            text = handle.read()
        for bus in ('scsi', 'virtio'):
            root = parse_domain(text)
            if root.get('type') not in ('qemu', 'kvm') or root.find('name') is None:
                continue
            name = 'corpus-%d' % len(items)
            root.find('name').text = name
            if root.find('uuid') is None:
                root.insert(1, root.makeelement('uuid'))
            root.find('uuid').text = str(uuid.uuid4())
            source = to_text(root)
            plan = plan_domain(source, TunePolicy(settings=DiskSettings(cache='keep', io='keep'), bus=bus,
                                                  convert_boot_disk=True), root=root)
            if plan.changed and not plan.errors:
                items.append((name, source, plan.after))
                origin[name] = '%s (bus=%s)' % (relpath, bus)
    check = check_defines(items, timeout=900)
    assert len(check.checked) > 1000, len(check.checked)
    assert not check.refused, {origin[n]: m for n, m in check.refused.items()}


# --- xml_path: W6, W7, hostile files, byte-for-byte templates -----------------------------------

def write_template(path, name='web-template', image='/var/lib/libvirt/images/web.qcow2'):
    path.write_text(dx.domain(name, [dx.disk(image, 'vda', 'virtio')]))
    return path.read_text()


def test_xml_path_honours_skip_and_refuses_override_names_of_other_domains(tmp_path):
    template = tmp_path / 'web.xml'
    original = write_template(template)
    skipped = tune(tmp_path / 'b', xml_path=str(template), probe_storage=False, cache='none', io='native',
                   overrides={'web-template': {'skip': True}})
    assert not skipped.failed and skipped['changed'] is False and skipped['domains'] == []
    assert template.read_text() == original
    typo = tune(tmp_path / 'b', xml_path=str(template), probe_storage=False, overrides={'web-tempalte': {'cache': 'none'}})
    assert typo.failed
    assert typo['msg'] == ('overrides name domains other than web-template, the domain of xml_path %s: '
                           'web-tempalte; nothing was changed' % template)
    globbed = tune(tmp_path / 'b', xml_path=str(template), probe_storage=False, cache='none', io='native',
                   overrides={'db-*': {'skip': True}, 'web-*': {'cache': 'directsync'}})
    assert not globbed.failed and "cache='directsync'" in template.read_text()
    assert not (tmp_path / 'b' / 'web-template').exists()


def test_xml_path_through_a_link_another_user_planted(tmp_path):
    """The user's link to the user's file: the file is tuned and stays theirs (owner, group, mode).
    The user's link to root's file: refused, root's file untouched."""
    home = nobody_dir()
    try:
        mine = os.path.join(home, 'web.xml')
        as_nobody('sh', '-c', 'umask 027 && : > "$1"', 'sh', mine)
        with open(mine, 'w', encoding='utf-8') as handle:     # root writes the content into the user's file
            handle.write(dx.domain('web-template', [dx.disk('/var/lib/libvirt/images/web.qcow2', 'vda', 'virtio')]))
        as_nobody('ln', '-s', 'web.xml', os.path.join(home, 'current.xml'))
        result = tune(tmp_path / 'b', xml_path=os.path.join(home, 'current.xml'), probe_storage=False, cache='none',
                      io='native')
        assert not result.failed, result['msg']
        assert os.path.islink(os.path.join(home, 'current.xml')), 'the link was replaced'
        info = os.stat(mine)
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (NOBODY, NOBODY, 0o640)
        with open(mine, encoding='utf-8') as handle:
            assert "cache='none' io='native'" in handle.read()
        secret_dir = tempfile.mkdtemp(prefix='kvmio-root-', dir='/var/tmp')
        secret = os.path.join(secret_dir, 'root.xml')
        with open(secret, 'w', encoding='utf-8') as handle:
            handle.write(dx.domain('root-only', [dx.disk('/var/lib/libvirt/images/r.qcow2', 'vda', 'virtio')]))
        os.chmod(secret, 0o600)
        os.chmod(secret_dir, 0o755)
        before = open(secret, 'rb').read()
        as_nobody('ln', '-s', secret, os.path.join(home, 'evil.xml'))
        attack = tune(tmp_path / 'b', xml_path=os.path.join(home, 'evil.xml'), probe_storage=False, cache='none',
                      io='native')
        assert attack.failed
        assert attack['msg'].startswith('xml_path %s leads through the symbolic link %s, which uid %d owns, to %s, '
                                        'which uid 0 owns' % (os.path.join(home, 'evil.xml'),
                                                              os.path.join(home, 'evil.xml'), NOBODY, secret))
        assert open(secret, 'rb').read() == before and os.listdir(secret_dir) == ['root.xml']
        shutil.rmtree(secret_dir)
    finally:
        shutil.rmtree(home)


def test_xml_path_that_is_not_a_plain_utf8_file_fails_clearly_and_never_hangs(tmp_path):
    fifo = tmp_path / 'fifo.xml'
    os.mkfifo(fifo)
    proc, args_file = start_module_process('kvm_disk_tune', {'xml_path': str(fifo), 'backup_dir': str(tmp_path / 'b')})
    try:
        result = finish_module_process(proc, args_file, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result.failed and result['msg'] == 'xml_path %s is a FIFO, not a regular file; nothing was read' % fifo
    latin1 = tmp_path / 'latin1.xml'
    latin1.write_bytes(b"<domain type='qemu'><name>caf\xe9</name></domain>")
    laughs = tmp_path / 'laughs.xml'
    laughs.write_text('<?xml version="1.0"?>\n<!DOCTYPE domain [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">'
                      ']>\n<domain type="qemu"><name>&b;</name></domain>\n')
    for path, message in (('/dev/zero', 'xml_path /dev/zero is a character device, not a regular file'),
                          (str(tmp_path), 'xml_path %s is a directory, not a regular file' % tmp_path),
                          (str(latin1), 'xml_path %s is not UTF-8 text (byte 0xe9 at offset 29)' % latin1),
                          (str(laughs), 'xml_path %s has a DOCTYPE' % laughs)):
        result = tune(tmp_path / 'b', xml_path=path)
        assert result.failed and result['msg'].startswith(message), (path, result['msg'])
        assert 'exception' not in result
    assert not (tmp_path / 'b').exists()


@pytest.fixture
def read_only_dir(tmp_path):
    source, mounted = tmp_path / 'rw', tmp_path / 'ro'
    source.mkdir()
    mounted.mkdir()
    subprocess.run(['mount', '--bind', str(source), str(mounted)], check=True)
    try:
        subprocess.run(['mount', '-o', 'remount,bind,ro', str(mounted)], check=True)
        yield source, mounted
    finally:
        subprocess.run(['umount', str(mounted)], check=True)


def test_xml_path_on_a_read_only_filesystem_fails_clearly_and_leaves_the_file(tmp_path, read_only_dir):
    source, mounted = read_only_dir
    original = write_template(source / 'web.xml')
    result = tune(tmp_path / 'b', xml_path=str(mounted / 'web.xml'), probe_storage=False, cache='none', io='native')
    assert result.failed and 'exception' not in result
    assert result['msg'] == ('cannot write xml_path %s (through a new file in %s): Read-only file system. The file is '
                             'unchanged.' % (mounted / 'web.xml', mounted))
    assert (source / 'web.xml').read_text() == original


def test_xml_path_on_a_full_filesystem_fails_clearly_and_leaves_the_file(tmp_path):
    full = tmp_path / 'full'
    full.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', str(full)], check=True)
    try:
        original = write_template(full / 'web.xml')
        filler = os.open(full / 'filler', os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(filler, b'x' * 512):
                pass
        except OSError:
            pass
        finally:
            os.close(filler)
        result = tune(tmp_path / 'b', xml_path=str(full / 'web.xml'), probe_storage=False, cache='none', io='native')
        assert result.failed and 'exception' not in result
        assert result['msg'] == ('cannot write xml_path %s (through a new file in %s): No space left on device. The '
                                 'file is unchanged.' % (full / 'web.xml', full))
        assert (full / 'web.xml').read_text() == original
        assert sorted(os.listdir(full)) == ['filler', 'web.xml'], 'no temporary file is left'
    finally:
        subprocess.run(['umount', str(full)], check=True)


def crlf_bom(golden):
    """A golden template (stored with LF) as a Windows editor writes it: a UTF-8 BOM and CRLF."""
    with open(os.path.join(GOLDEN, golden), 'rb') as handle:
        return b'\xef\xbb\xbf' + handle.read().replace(b'\n', b'\r\n')


def test_a_template_kept_in_git_gets_a_diff_only_where_a_setting_changed(tmp_path):
    """BOM, XML declaration, comments and a PI around the root, CDATA, references, both quote
    styles and CRLF line ends: git sees three changed lines, exactly the reviewed golden file."""
    repo = tmp_path / 'templates'
    repo.mkdir()
    original, expected = [crlf_bom(name) for name in ('template.xml', 'template.virtio-none-native.xml')]
    (repo / 'web.xml').write_bytes(original)
    git = ['git', '-C', str(repo), '-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'core.autocrlf=false']
    subprocess.run(git + ['init', '-q'], check=True)
    subprocess.run(git + ['add', 'web.xml'], check=True)
    subprocess.run(git + ['commit', '-qm', 'template'], check=True)
    options = {'xml_path': str(repo / 'web.xml'), 'probe_storage': False, 'cache': 'none', 'io': 'native',
               'bus': 'virtio'}
    result = tune(tmp_path / 'b', diff=True, **options)
    assert not result.failed and result['changed'], result
    assert (repo / 'web.xml').read_bytes() == expected
    numstat = subprocess.run(git + ['diff', '--numstat'], check=True, capture_output=True, text=True).stdout
    assert numstat == '3\t3\tweb.xml\n'
    assert result['diff'][0]['before'] == original.decode('utf-8')
    assert result['diff'][0]['after'] == expected.decode('utf-8')
    with open(result['backups'][0], 'rb') as handle:
        assert handle.read() == original
    again = tune(tmp_path / 'b', **options)
    assert not again.failed and again['changed'] is False
    assert subprocess.run(git + ['diff', '--numstat'], check=True, capture_output=True, text=True).stdout == numstat
