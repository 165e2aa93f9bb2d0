# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 14, host side: the attacks of the review, as they happened, against the real thing.

A hostile local user is uid 65534 (nobody) through ``setpriv``, planting links and files where it can
write (a sticky world-writable directory, as /tmp, /var/tmp and /run/lock are); a hostile guest is the
bytes of its raw disk (a qcow2 header made with ``qemu-img create -u``); a careless admin gives a
backup directory others can write. None of this depends on fs.protected_symlinks/protected_regular.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import libvirt
import pytest
from lxml import etree

from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import canonical
from ansible_collections.kvmio.tuning.plugins.module_utils._lock import lock_path
from ansible_collections.kvmio.tuning.plugins.modules import domain_restart, domain_restore, iothread_pin, \
    kvm_disk_tune
from helpers import domain_xml as dx
from helpers import qemu_img
from helpers.modules import run_module, run_module_bounded

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
URI = 'qemu:///system'
NOBODY = 65534
NAME_MAX = 255           # bytes in a file name on Linux filesystems
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def setpriv(uid):
    return ['setpriv', '--reuid=%d' % uid, '--regid=%d' % uid, '--clear-groups']


def as_user(uid, argv, **kwargs):
    return subprocess.run(setpriv(uid) + list(argv), capture_output=True, text=True, check=False, **kwargs)


@pytest.fixture
def shared_dir():
    """A directory every local user may write, like /tmp: world-writable with the sticky bit."""
    path = tempfile.mkdtemp(prefix='kvmio-shared-', dir='/tmp')
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def unique_uri():
    """qemu:///system under a URI of this test's own: its lock is no other run's (libvirt ignores the query)."""
    return '%s?kvmio-test=%s' % (URI, os.urandom(4).hex())


def old_shared_lock(uri, uid=0):
    """Where kvmio.tuning up to 0f3db44 put the lock of ``uri``: a name anyone can compute, in /run/lock."""
    digest = hashlib.sha256(('%d:%s' % (uid, uri)).encode('utf-8')).hexdigest()[:16]
    return '/run/lock/kvmio-tuning-%s.lock' % digest


def tuned_domain(factory, base, extra_devices=''):
    name = factory.name(base)
    dom = factory.define(dx.domain(name, [dx.disk(factory.image(name + '.qcow2'), 'vda', 'virtio')],
                                   extra_devices=extra_devices))
    return name, dom


# --- S2: lock files ---------------------------------------------------------------------------------

def test_a_lock_symlink_planted_by_another_user_is_never_followed(system_domains, tmp_path, unique_uri):
    victim = tmp_path / 'root-only.conf'
    victim.write_text('root data\n')
    victim.chmod(0o600)
    name, dom = tuned_domain(system_domains, 'lock')
    # nobody plants a link to the victim wherever the lock of this URI goes (now, and up to 0f3db44).
    candidates = {lock_path(unique_uri), old_shared_lock(unique_uri)}
    planted = [c for c in candidates if as_user(NOBODY, ['ln', '-s', str(victim), c]).returncode == 0]
    try:
        result = run_module(kvm_disk_tune, {'uri': unique_uri, 'domains': [name], 'lock_timeout': 2,
                                            'backup_dir': str(tmp_path / 'b')})
        assert victim.read_text() == 'root data\n', 'root followed the planted link and rewrote the file'
        assert not result.failed, result.get('msg')
        assert lock_path(unique_uri) not in planted, 'the user could write into the lock directory'
        assert "cache='none'" in dom.XMLDesc(INACTIVE)
    finally:
        for path in candidates:
            if os.path.islink(path):
                os.unlink(path)


def test_a_lock_another_user_creates_and_holds_never_blocks_a_run(system_domains, tmp_path, unique_uri):
    name, _dom = tuned_domain(system_domains, 'held')
    candidates = sorted({lock_path(unique_uri), old_shared_lock(unique_uri)})
    holder = ("import fcntl, os, sys, time\n"
              "held = []\n"
              "for path in sys.argv[1:]:\n"
              "    try:\n"
              "        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)\n"
              "    except OSError:\n"
              "        continue\n"
              "    os.write(fd, b'<b>EVIL-TEXT</b>')\n"
              "    fcntl.flock(fd, fcntl.LOCK_EX)\n"
              "    held.append(path)\n"
              "print(' '.join(held), flush=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen(setpriv(NOBODY) + ['/usr/bin/python3', '-c', holder] + candidates,
                            stdout=subprocess.PIPE, text=True)
    try:
        held = proc.stdout.readline().split()
        result = run_module(kvm_disk_tune, {'uri': unique_uri, 'domains': [name], 'lock_timeout': 2,
                                            'backup_dir': str(tmp_path / 'b')})
        assert 'EVIL-TEXT' not in json.dumps(result), 'the message printed the user\'s text as the holder'
        assert not result.failed, result.get('msg')
        assert lock_path(unique_uri) not in held
    finally:
        proc.kill()
        proc.wait()
        for path in candidates:
            if os.path.exists(path) and os.stat(path).st_uid == NOBODY:
                os.unlink(path)


def test_a_user_s_lock_directory_made_by_another_user_is_refused(shared_dir):
    """A non-root user (qemu:///session) gets a lock directory of its own; one that another user made
    first (a link to that user's directory) is refused, and nothing is created or truncated through it."""
    user, attacker = 65533, NOBODY
    victim = os.path.join(shared_dir, 'user-file')
    with open(victim, 'w', encoding='utf-8') as handle:
        handle.write('user data\n')
    os.chown(victim, user, user)
    trap = os.path.join(shared_dir, 'trap')
    as_user(attacker, ['mkdir', '-m', '0777', trap])
    subject = 'qemu:///session?kvmio-test=%s' % os.urandom(4).hex()
    digest = hashlib.sha256(('%d:%s' % (user, subject)).encode('utf-8')).hexdigest()[:16]
    for name in ('%s.lock' % digest, 'kvmio-tuning-%s.lock' % digest):
        as_user(attacker, ['ln', '-s', victim, os.path.join(trap, name)])
    as_user(attacker, ['ln', '-s', trap, os.path.join(shared_dir, 'kvmio-tuning-%d' % user)])
    old = old_shared_lock(subject, uid=user)
    as_user(attacker, ['ln', '-s', victim, old])
    # A world-readable import path for the collection (the test's own is private to root).
    imports = tempfile.mkdtemp(prefix='kvmio-imports-')
    os.chmod(imports, 0o755)
    os.makedirs(os.path.join(imports, 'ansible_collections', 'kvmio'))
    os.symlink(REPO, os.path.join(imports, 'ansible_collections', 'kvmio', 'tuning'))
    script = ("import sys\n"
              "from ansible_collections.kvmio.tuning.plugins.module_utils._lock import HostLock\n"
              "from ansible_collections.kvmio.tuning.plugins.module_utils._errors import KvmioError\n"
              "try:\n"
              "    with HostLock(sys.argv[1], 2):\n"
              "        print('LOCKED')\n"
              "except KvmioError as err:\n"
              "    print('REFUSED ' + err.msg)\n")
    env = {'PATH': '/usr/bin:/bin', 'PYTHONPATH': imports, 'TMPDIR': shared_dir, 'HOME': '/nonexistent'}
    try:
        run = as_user(user, ['/usr/bin/python3', '-c', script, subject], env=env, timeout=60)
        with open(victim, encoding='utf-8') as handle:
            assert handle.read() == 'user data\n', 'the run followed the planted link and rewrote the file'
        assert run.stdout.startswith('REFUSED '), (run.stdout, run.stderr)
        assert 'kvmio-tuning-%d' % user in run.stdout and 'uid %d' % attacker in run.stdout
        assert sorted(os.listdir(trap)) == sorted(('%s.lock' % digest, 'kvmio-tuning-%s.lock' % digest))
        # With a runtime directory of its own (XDG_RUNTIME_DIR, as a login session has), the run goes ahead.
        runtime = os.path.join(shared_dir, 'run-user')
        os.mkdir(runtime, 0o700)
        os.chown(runtime, user, user)
        run = as_user(user, ['/usr/bin/python3', '-c', script, subject], env=dict(env, XDG_RUNTIME_DIR=runtime),
                      timeout=60)
        assert run.stdout.strip() == 'LOCKED', (run.stdout, run.stderr)
        assert os.stat(os.path.join(runtime, 'kvmio-tuning')).st_mode & 0o777 == 0o700
    finally:
        shutil.rmtree(imports)
        if os.path.islink(old):
            os.unlink(old)


# --- S3: image headers a guest wrote -------------------------------------------------------------------

@pytest.fixture
def nbd_listener():
    """A local TCP listener standing for the server a guest names; it must never see a connection."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(('127.0.0.1', 0))
    server.listen(16)
    yield server
    server.close()


def connections(server):
    server.setblocking(False)
    seen = 0
    while True:
        try:
            conn, _addr = server.accept()
        except BlockingIOError:
            return seen
        conn.close()
        seen += 1


def test_a_guest_written_header_never_makes_root_connect_where_the_guest_says(system_domains, nbd_listener):
    port = nbd_listener.getsockname()[1]
    directory = system_domains.image_dir
    # The guest wrote a qcow2 header naming nbd://127.0.0.1:PORT into its raw disk.
    guest_raw = os.path.join(directory, 'guest.raw')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'nbd://127.0.0.1:%d/x' % port, '-F', 'raw',
                    '-u', guest_raw, '16M'], check=True)
    # An overlay whose raw base is such a disk, made by a tool that did not record the base's format.
    overlay = os.path.join(directory, 'overlay.qcow2')
    qemu_img.create(overlay, '16M', backing=guest_raw, backing_format='raw')
    qemu_img.drop_backing_format(overlay)
    name = system_domains.name('hdr')
    system_domains.define(dx.domain(name, [dx.disk(guest_raw, 'vda', 'virtio', fmt='raw'),
                                           dx.disk(overlay, 'vdb', 'virtio', fmt='qcow2')]))
    facts = run_module_bounded('kvm_io_info', {'uri': URI, 'domains': [name]}, timeout=90)
    tuned = run_module_bounded('kvm_disk_tune', {'uri': URI, 'domains': [name], 'probe_storage': True,
                                                 'backup_dir': os.path.join(directory, 'b')}, timeout=90)
    assert connections(nbd_listener) == 0, 'root connected to the server the guest named'
    assert facts is not None and tuned is not None, 'a run hangs'
    assert not facts.failed and not tuned.failed, (facts.get('msg'), tuned.get('msg'))
    disks = {d['target']: d for d in facts['domains'][0]['disks']}
    assert disks['vda']['image']['format'] == 'raw' and disks['vda']['image']['backing_file'] is None
    assert disks['vda']['storage']['chain'] == [os.path.realpath(guest_raw)]
    assert disks['vdb']['image']['format'] == 'qcow2'
    assert tuned['storage'][overlay]['chain'] == [os.path.realpath(overlay), os.path.realpath(guest_raw)]


def test_a_fifo_anywhere_in_a_chain_is_named_not_waited_on(system_domains):
    directory = system_domains.image_dir
    fifo = os.path.join(directory, 'pipe')
    os.mkfifo(fifo)
    guest_raw = os.path.join(directory, 'guest.raw')       # a guest's raw disk naming the FIFO as backing
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', fifo, '-F', 'raw', '-u', guest_raw, '16M'],
                   check=True)
    overlay = os.path.join(directory, 'overlay.qcow2')     # a qcow2 whose base was replaced by a FIFO
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', fifo, '-F', 'raw', '-u', overlay, '16M'],
                   check=True)
    name = system_domains.name('fifo')
    system_domains.define(dx.domain(name, [dx.disk(guest_raw, 'vda', 'virtio', fmt='raw'),
                                           dx.disk(overlay, 'vdb', 'virtio', fmt='qcow2'),
                                           dx.disk(fifo, 'vdc', 'virtio', fmt='raw')]))
    started = time.monotonic()
    tuned = run_module_bounded('kvm_disk_tune', {'uri': URI, 'domains': [name], 'cache': 'auto',
                                                 'backup_dir': os.path.join(directory, 'b')}, timeout=90)
    facts = run_module_bounded('kvm_io_info', {'uri': URI, 'domains': [name]}, timeout=90)
    assert tuned is not None and facts is not None, 'a run waits on the FIFO'
    assert time.monotonic() - started < 60
    assert not tuned.failed and not facts.failed, (tuned.get('msg'), facts.get('msg'))
    storage = tuned['storage']
    assert storage[guest_raw]['chain'] == [os.path.realpath(guest_raw)] and storage[guest_raw]['odirect'] is True
    assert storage[overlay]['odirect'] is None and 'is a FIFO, not a regular file or block device' in storage[overlay]['detail']
    assert storage[fifo]['kind'] == 'unsupported' and 'is a FIFO' in storage[fifo]['detail']
    caches = {d['target']: d['after']['cache'] for d in tuned['domains'][0]['disks']}
    assert caches == {'vda': 'none', 'vdb': 'writeback', 'vdc': 'writeback'}, 'unsure storage gets writeback'


def test_storage_on_a_hung_mount_is_could_not_tell_not_a_hung_run(tmp_path, hung_mount):
    """xml_path mode, so that libvirtd (shared by every test) never looks at the hung mount."""
    local = qemu_img.create(str(tmp_path / 'local.qcow2'), '16M')
    remote = os.path.join(hung_mount, 'remote.qcow2')
    xml = tmp_path / 'domain.xml'
    xml.write_text(dx.domain('hung-storage', [dx.disk(local, 'vda', 'virtio'), dx.disk(remote, 'vdb', 'virtio'),
                                              dx.disk(os.path.join(hung_mount, 'other.qcow2'), 'vdc', 'virtio')]))
    started = time.monotonic()
    result = run_module_bounded('kvm_disk_tune', {'xml_path': str(xml), 'backup_dir': str(tmp_path / 'b')}, timeout=120)
    assert result is not None, 'the run hangs on the dead mount'
    assert not result.failed, result.get('msg')
    assert time.monotonic() - started < 60, 'one bounded probe per mount, not one per disk'
    storage = result['storage']
    assert storage[remote]['odirect'] is None and 'did not finish within 10 s' in storage[remote]['detail']
    assert 'an earlier probe on %s did not finish' % hung_mount in storage[os.path.join(hung_mount, 'other.qcow2')][
        'detail']
    caches = {d['target']: d['after']['cache'] for d in result['domains'][0]['disks']}
    assert caches == {'vda': 'none', 'vdb': 'writeback', 'vdc': 'writeback'}
    assert any('could not tell' in w for w in result.warning_messages), result.warning_messages


# --- S6, D3, W13: backups ----------------------------------------------------------------------------

HOSTILE_DISK = "<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/loop0'/>" \
               "<target dev='vdz' bus='virtio'/></disk>"


def planted_backup(xml_text):
    """What an attacker writes: the domain's own XML (name and UUID), plus the host's /dev/loop0."""
    return xml_text.replace('</devices>', HOSTILE_DISK + '</devices>')


def test_backups_in_a_directory_others_can_write_are_never_restored(system_domains, tmp_path, shared_dir):
    name, dom = tuned_domain(system_domains, 'plant')
    original = dom.XMLDesc(INACTIVE)
    attacker_dir = os.path.join(shared_dir, 'backups')                 # made by nobody, as /tmp/x would be
    as_user(NOBODY, ['mkdir', '-m', '0755', attacker_dir])
    admin_dir = tmp_path / 'open'                                      # root's, but mode 0777 by mistake
    admin_dir.mkdir()
    admin_dir.chmod(0o777)
    linked = os.path.join(shared_dir, 'linked')                        # a link nobody made to root's own dir
    trusted = tmp_path / 'trusted'
    trusted.mkdir(mode=0o700)
    as_user(NOBODY, ['ln', '-s', str(trusted), linked])
    future = '%s.29991231T235959.999999Z.xml' % name
    for directory, owner in ((attacker_dir, NOBODY), (str(admin_dir), NOBODY), (str(trusted), 0)):
        path = os.path.join(directory, future)
        with open(path, 'w', encoding='utf-8') as handle:
            handle.write(planted_backup(original))
        os.chown(path, owner, owner)
    for backup_dir in (attacker_dir, str(admin_dir), linked):
        result = run_module(domain_restore, {'uri': URI, 'domains': [name], 'backup_dir': backup_dir})
        assert '/dev/loop0' not in dom.XMLDesc(INACTIVE), 'restored a backup another user planted'
        assert result.failed and 'so it is not used' in result['msg'], result
    # The same care where backups are written: nothing defined, nothing written there.
    result = run_module(kvm_disk_tune, {'uri': URI, 'domains': [name], 'backup_dir': os.path.join(attacker_dir, 'b')})
    assert result.failed and result['msg'].startswith('cannot back up the XML of domain %s' % name), result
    assert dom.XMLDesc(INACTIVE) == original and not os.path.exists(os.path.join(attacker_dir, 'b'))
    planted_dir = os.path.join(shared_dir, 'planted')
    as_user(NOBODY, ['mkdir', '-m', '0777', os.path.join(shared_dir, 'mine')])
    as_user(NOBODY, ['ln', '-s', os.path.join(shared_dir, 'mine'), planted_dir])
    result = run_module(kvm_disk_tune, {'uri': URI, 'domains': [name], 'backup_dir': planted_dir})
    assert result.failed and dom.XMLDesc(INACTIVE) == original
    assert os.listdir(os.path.join(shared_dir, 'mine')) == [], 'a backup (with its secrets) went to a user\'s directory'


def test_a_backup_restores_only_the_domain_and_uuid_it_holds(system_domains, tmp_path, backup_dir):
    name_a, dom_a = tuned_domain(system_domains, 'da')
    name_b, dom_b = tuned_domain(system_domains, 'db')
    tuned = run_module(kvm_disk_tune, {'uri': URI, 'domains': [name_a, name_b], 'backup_dir': backup_dir})
    assert not tuned.failed and len(tuned['backups']) == 2
    now_a, now_b = dom_a.XMLDesc(INACTIVE), dom_b.XMLDesc(INACTIVE)
    backup_b = next(p for p in tuned['backups'] if os.path.basename(p).startswith(name_b + '.'))
    # A file named as A's latest backup that holds B's XML (a copy gone wrong, a hand edit).
    mislabelled = os.path.join(backup_dir, '%s.29991231T235959.999999Z.xml' % name_a)
    shutil.copy(backup_b, mislabelled)
    result = run_module(domain_restore, {'uri': URI, 'domains': [name_a], 'backup_dir': backup_dir})
    assert dom_b.XMLDesc(INACTIVE) == now_b, 'restoring A redefined B'
    assert result.failed and result['msg'] == ('backup %s holds domain %s, not %s; it cannot restore %s (nothing was '
                                               'changed)' % (mislabelled, name_b, name_a, name_a))
    assert dom_a.XMLDesc(INACTIVE) == now_a
    os.unlink(mislabelled)
    # Same name, another machine: A undefined and defined again gets a new UUID.
    backup_a = next(p for p in tuned['backups'] if os.path.basename(p).startswith(name_a + '.'))
    xml = dom_a.XMLDesc(INACTIVE)
    dom_a.undefine()
    root = etree.fromstring(xml.encode())
    root.remove(root.find('uuid'))
    dom_a = system_domains.conn.defineXML(etree.tostring(root, encoding='unicode'))
    result = run_module(domain_restore, {'uri': URI, 'backups': [backup_a], 'backup_dir': backup_dir})
    assert result.failed and 'but domain %s here has UUID %s' % (name_a, dom_a.UUIDString()) in result['msg'], result
    assert canonical(dom_a.XMLDesc(INACTIVE)) != canonical(open(backup_a, encoding='utf-8').read())


@pytest.mark.parametrize('content, message', [
    ('<?xml version="1.0"?>\n<!DOCTYPE domain [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
     '<domain type="qemu"><name>NAME</name><description>&b;</description></domain>\n', 'has a DOCTYPE declaration'),
    ('<!DOCTYPE domain SYSTEM "file:///etc/shadow">\n<domain type="qemu"><name>NAME</name></domain>\n',
     'has a DOCTYPE declaration'),
    (b'<domain type="qemu"><name>NAME</name><description>\xff\xfe</description></domain>\n', 'is not UTF-8 text'),
    (None, 'is not a regular file (a directory)'),
])
def test_a_broken_backup_is_a_clear_error(system_domains, tmp_path, backup_dir, content, message):
    name, dom = tuned_domain(system_domains, 'bad')
    before = dom.XMLDesc(INACTIVE)
    os.makedirs(backup_dir, mode=0o700)
    path = os.path.join(backup_dir, '%s.20300101T000000.000000Z.xml' % name)
    if content is None:
        os.mkdir(path)
    else:
        data = content.replace(b'NAME', name.encode()) if isinstance(content, bytes) else \
            content.replace('NAME', name).encode()
        with open(path, 'wb') as handle:
            handle.write(data)
        os.chmod(path, 0o600)
    result = run_module(domain_restore, {'uri': URI, 'backups': [path], 'backup_dir': backup_dir})
    assert result.failed and message in result['msg'] and path in result['msg'], result
    if content is None:
        by_name = run_module(domain_restore, {'uri': URI, 'domains': [name], 'backup_dir': backup_dir})
        assert by_name.failed and by_name['msg'] == 'no backup of domain %s from libvirt %s in %s' % (name, URI, backup_dir)
        assert any('is not a regular file (a directory)' in w for w in by_name.warning_messages)
    assert dom.XMLDesc(INACTIVE) == before


@pytest.mark.parametrize('length, char', [(230, 'x'), (130, '\u00e9')])
def test_a_long_domain_name_is_backed_up_and_restored_by_name(system_domains, backup_dir, length, char):
    name = system_domains.name('long')
    name = name + '-' + char * (length - len(name) - 1)
    dom = system_domains.define(dx.domain(name, [dx.disk(system_domains.image('long.qcow2'), 'vda', 'virtio')]))
    original = dom.XMLDesc(INACTIVE)
    tuned = run_module(kvm_disk_tune, {'uri': URI, 'domains': [name], 'backup_dir': backup_dir})
    assert not tuned.failed, tuned.get('msg')
    assert all(len(os.path.basename(p).encode('utf-8')) <= NAME_MAX for p in tuned['backups'])
    restored = run_module(domain_restore, {'uri': URI, 'domains': [name], 'backup_dir': backup_dir})
    assert not restored.failed and restored['changed'], restored.get('msg')
    assert restored['domains'][0]['restored_from'] == tuned['backups'][0]
    assert canonical(dom.XMLDesc(INACTIVE)) == canonical(original)


# --- S8: secrets -----------------------------------------------------------------------------------------

def test_diffs_never_carry_graphics_passwords(system_domains, backup_dir):
    secret = os.urandom(4).hex()            # VNC passwords have at most 8 characters
    graphics = "<graphics type='vnc' passwd='%s' autoport='yes'/>" % secret
    name, dom = tuned_domain(system_domains, 'secret', extra_devices=graphics)
    tuned = run_module(kvm_disk_tune, {'uri': URI, 'domains': [name], 'backup_dir': backup_dir}, diff=True)
    pinned = run_module(iothread_pin, {'uri': URI, 'domains': [name], 'backup_dir': backup_dir}, diff=True)
    restored = run_module(domain_restore, {'uri': URI, 'backups': tuned['backups'], 'backup_dir': backup_dir},
                          diff=True)
    for result in (tuned, pinned, restored):
        assert not result.failed and result['diff'], result.get('msg')
        assert secret not in json.dumps(result), 'a password reached the result'
        assert 'passwd="********"' in result['diff'][0]['before']
    with open(tuned['backups'][0], encoding='utf-8') as handle:
        assert secret in handle.read(), 'the backup keeps the password, to restore it'
    assert secret in dom.XMLDesc(INACTIVE), 'the restored domain has its password back'


# --- W5: glob characters in real names -----------------------------------------------------------------

def test_an_exact_name_wins_over_a_glob(system_domains, backup_dir):
    prefix = system_domains.name('glob')
    plain, bracket = prefix + '-adv1', prefix + '-adv[1]'
    image = system_domains.image
    doms = {}
    for name in (plain, bracket):
        path = image(name.replace('[', '_').replace(']', '_') + '.qcow2')
        doms[name] = system_domains.define(dx.domain(name, [dx.disk(path, 'vda', 'virtio')]))

    def cache(name):
        return etree.fromstring(doms[name].XMLDesc(INACTIVE).encode()).find('devices/disk/driver').get('cache')

    result = run_module(kvm_disk_tune, {'uri': URI, 'domains': [prefix + '-*'], 'exclude': [bracket],
                                        'backup_dir': backup_dir})
    assert not result.failed and [d['name'] for d in result['domains']] == [plain], result.get('msg')
    assert (cache(plain), cache(bracket)) == ('none', None)
    result = run_module(kvm_disk_tune, {'uri': URI, 'domains': [prefix + '-*'], 'cache': 'writeback',
                                        'overrides': {bracket: {'cache': 'directsync'}}, 'backup_dir': backup_dir})
    assert not result.failed and (cache(plain), cache(bracket)) == ('writeback', 'directsync'), result.get('msg')
    result = run_module(iothread_pin, {'uri': URI, 'domains': [prefix + '-*'], 'overrides': {bracket: {'skip': True}},
                                       'backup_dir': backup_dir})
    assert not result.failed and [d['name'] for d in result['domains']] == [plain], result.get('msg')
    # Disk rules: a path with brackets names that disk, not the one the glob would match.
    name = prefix + '-disks'
    first, second = image('a1.qcow2'), image('a[1].qcow2')
    dom = system_domains.define(dx.domain(name, [dx.disk(first, 'vda', 'virtio'), dx.disk(second, 'vdb', 'virtio')]))
    result = run_module(kvm_disk_tune, {'uri': URI, 'domains': [name], 'cache': 'none',
                                        'disks': [{'match': second, 'cache': 'writeback'}], 'backup_dir': backup_dir})
    assert not result.failed, result.get('msg')
    drivers = etree.fromstring(dom.XMLDesc(INACTIVE).encode()).findall('devices/disk/driver')
    assert [d.get('cache') for d in drivers] == ['none', 'writeback']


# --- W11: a batch restart where one guest ignores ACPI ---------------------------------------------------

class AcpiGuest:
    """Powers a domain off when QEMU reports the ACPI power button (the POWERDOWN monitor event), as a
    guest OS that honours it does; the test's other domains sit in firmware and ignore it."""

    def __init__(self, names):
        import libvirt_qemu
        from ansible_collections.kvmio.tuning.plugins.module_utils._libvirt import _start_event_loop

        _start_event_loop()
        self.conn = libvirt.open(URI)
        self.names = names
        self.callbacks = [libvirt_qemu.qemuMonitorEventRegister(self.conn, self.conn.lookupByName(n), 'POWERDOWN',
                                                                self._powerdown, None, 0) for n in names]

    def _powerdown(self, _conn, dom, _event, _seconds, _micros, _details, _opaque):
        threading.Thread(target=lambda: self.conn.lookupByName(dom.name()).destroy(), daemon=True).start()

    def close(self):
        import libvirt_qemu

        for callback in self.callbacks:
            libvirt_qemu.qemuMonitorEventDeregister(self.conn, callback)
        self.conn.close()


def test_a_batch_restart_never_leaves_a_guest_off_that_it_shut_down(system_domains):
    os.chmod(system_domains.image_dir, 0o755)
    prefix = system_domains.name('batch')
    names = ['%s-%d' % (prefix, i) for i in range(3)]
    doms = [system_domains.define(dx.domain(n, [dx.disk(system_domains.image(n + '.qcow2'), 'vda', 'virtio')]))
            for n in names]
    for dom in doms:
        dom.create()
    guests = AcpiGuest(names[:2])           # the first two honour ACPI; the third ignores it
    try:
        result = run_module(domain_restart, {'uri': URI, 'domains': names, 'batch_size': 3, 'shutdown_timeout': 5,
                                             'start_timeout': 60})
    finally:
        guests.close()
    try:
        assert all(d.isActive() for d in doms), 'a guest this run shut down was left off'
        assert result.failed
        assert result['msg'].startswith('domain %s did not shut down within 5 s' % names[2]), result['msg']
        assert 'the other domains of its batch were restarted: %s, %s' % (names[0], names[1]) in result['msg']
        assert result['restarted'] == names[:2] and result['not_restarted'] == [names[2]]
    finally:
        for dom in doms:
            if dom.isActive():
                dom.destroy()


# --- W3/W4 and a cpuset that does not fit in memory: iothread_pin values -------------------------------

@pytest.mark.parametrize('options, message', [
    ({'iothreads': '2', 'disk_iothreads': {'vdb': 9}}, ': disk vdb would use iothread 9, but the domain has iothreads 1-2'),
    ({'iothreads': '2', 'disk_iothreads': {'vdz': 1}}, 'disk_iothreads: vdz is not a virtio disk of any selected domain'),
    ({'iothreads': '2', 'disk_iothreads': {'vdb': 'two'}}, "disk_iothreads: vdb must map to an iothread number"),
    ({'max_iothreads': -1}, 'max_iothreads must be from 1 to 1024, not -1'),
    ({'iothreads': '-3'}, "iothreads must be a number from 0 to 1024, 'auto' or 'keep', not '-3'"),
    ({'overrides': {'*': {'skp': True}}}, "overrides['*']: unknown setting skp (an override takes disk_iothreads,"),
    ({'overrides': {'*': 'yes'}}, "overrides['*'] must be a dictionary of settings, not str"),
    ({'overrides': {'*': {'iothreads': 'many'}}}, "overrides['*']: iothreads must be a number"),
    ({'vcpu_pinning': '0-99999999'}, "CPU 99999999 is beyond 16383, the highest libvirt accepts"),
])
def test_iothread_pin_values_fail_before_any_define(system_domains, backup_dir, options, message):
    prefix = system_domains.name('iov')
    doms = []
    for index in range(3):
        name = '%s-%d' % (prefix, index)
        disks = [dx.disk(system_domains.image('%s-%s.qcow2' % (name, dev)), dev, 'virtio') for dev in ('vda', 'vdb')]
        doms.append(system_domains.define(dx.domain(name, disks)))
    originals = [d.XMLDesc(INACTIVE) for d in doms]
    result = run_module(iothread_pin, dict({'uri': URI, 'domains': [prefix + '-*'], 'backup_dir': backup_dir},
                                           **options))
    assert result.failed and message in result['msg'], result
    assert [d.XMLDesc(INACTIVE) for d in doms] == originals
    assert not os.path.exists(backup_dir), 'nothing was backed up: nothing was about to be defined'


def test_iothreads_zero_takes_every_disk_off_its_iothread(system_domains, backup_dir):
    name = system_domains.name('io0')
    disks = [dx.disk(system_domains.image('%s.qcow2' % dev), dev, 'virtio') for dev in ('vda', 'vdb')]
    dom = system_domains.define(dx.domain(name, disks))
    first = run_module(iothread_pin, {'uri': URI, 'domains': [name], 'iothreads': '2', 'backup_dir': backup_dir})
    assert not first.failed and first['changed']
    none = run_module(iothread_pin, {'uri': URI, 'domains': [name], 'iothreads': '0', 'backup_dir': backup_dir})
    assert not none.failed, none.get('msg')
    root = etree.fromstring(dom.XMLDesc(INACTIVE).encode())
    assert [d.find('driver').get('iothread') for d in root.findall('devices/disk')] == [None, None]
    assert (root.findtext('iothreads') or '0') == '0'
    again = run_module(iothread_pin, {'uri': URI, 'domains': [name], 'iothreads': '0', 'backup_dir': backup_dir})
    assert again['changed'] is False


# --- Issue 14, second review (L6): other secrets a domain's XML holds in the clear -----------------------

SYSINFO = """
  <sysinfo type='smbios'>
    <system><entry name='serial'>SERIAL-%(s)s</entry></system>
    <oemStrings><entry>cloud-init:token=OEM-%(s)s</entry></oemStrings>
  </sysinfo>
  <sysinfo type='fwcfg'><entry name='opt/com.example/key'>FWCFG-%(s)s</entry></sysinfo>"""
COMMANDLINE = """  <qemu:commandline>
    <qemu:arg value='-object'/><qemu:arg value='secret,id=s0,data=ARG-%(s)s'/>
    <qemu:env name='TOKEN' value='ENV-%(s)s'/>
  </qemu:commandline>
</domain>"""


def domain_with_secrets(name, disk_path, secret):
    xml = dx.domain(name, [dx.disk(disk_path, 'vda', 'virtio')], metadata=SYSINFO % {'s': secret},
                    extra_devices="<graphics type='vnc' passwd='%s' autoport='yes'/>" % secret[:8])
    xml = xml.replace("<domain type='qemu'>", "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/"
                                              "qemu/1.0'>")
    return xml.replace('</domain>', COMMANDLINE % {'s': secret})


def test_diffs_never_carry_command_line_sysinfo_or_environment_secrets(system_domains, backup_dir, tmp_path):
    secret = os.urandom(8).hex()
    name = system_domains.name('secrets')
    dom = system_domains.define(domain_with_secrets(name, system_domains.image(name + '.qcow2'), secret))
    assert 'ARG-%s' % secret in dom.XMLDesc(INACTIVE) and 'FWCFG-%s' % secret in dom.XMLDesc(INACTIVE)
    tuned = run_module(kvm_disk_tune, {'uri': URI, 'domains': [name], 'backup_dir': backup_dir}, diff=True)
    pinned = run_module(iothread_pin, {'uri': URI, 'domains': [name], 'backup_dir': backup_dir}, diff=True)
    restored = run_module(domain_restore, {'uri': URI, 'backups': tuned['backups'], 'backup_dir': backup_dir},
                          diff=True)
    template = tmp_path / 'template.xml'
    template.write_text(domain_with_secrets('template', str(tmp_path / 'disk.qcow2'), secret))
    in_file = run_module(kvm_disk_tune, {'xml_path': str(template), 'backup_dir': backup_dir}, diff=True)
    for result in (tuned, pinned, restored, in_file):
        assert not result.failed and result['diff'], result.get('msg')
        assert secret[:8] not in json.dumps(result), 'a secret reached the result'
    with open(tuned['backups'][0], encoding='utf-8') as handle:
        kept = handle.read()
    assert all(s in kept for s in ('ARG-%s' % secret, 'ENV-%s' % secret, 'OEM-%s' % secret, 'FWCFG-%s' % secret)), \
        'the backup keeps the secrets, to restore them'
    assert 'ENV-%s' % secret in template.read_text() and 'ENV-%s' % secret in dom.XMLDesc(INACTIVE)
    # The file's diff is the file's own text, secrets apart: the changed lines only.
    changed = [line for line in in_file['diff'][0]['after'].splitlines()
               if line not in in_file['diff'][0]['before'].splitlines()]
    assert changed and all('<driver' in line for line in changed), changed
