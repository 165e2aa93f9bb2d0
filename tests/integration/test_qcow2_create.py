# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""qcow2_create with the real qemu-img on real files, QEMU's image locks and libvirtd."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pathlib
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._image_chain import qemu_holds
from ansible_collections.kvmio.tuning.plugins.module_utils._image_plan import parse_size
from ansible_collections.kvmio.tuning.plugins.modules import qcow2_create
from helpers import domain_xml as dx
from helpers import qemu_img
from helpers.modules import finish_module_process, run_module, run_module_bounded, start_module_process


def image(path, check=False, diff=False, **options):
    args = {'path': str(path), 'uri': 'qemu:///system'}
    args.update(options)
    return run_module(qcow2_create, args, check_mode=check, diff=diff)


def allocated_kib(path):
    return os.stat(path).st_blocks // 2


@pytest.mark.parametrize('mode, state, min_kib, max_kib', [
    ('off', 'off', 0, 1024),
    ('metadata', 'metadata', 0, 2048),
    ('falloc', 'falloc', 64 * 1024, 80 * 1024),
    ('full', 'falloc', 64 * 1024, 80 * 1024),
])
def test_each_preallocation_mode_and_its_effect_on_disk(tmp_path, mode, state, min_kib, max_kib):
    path = tmp_path / ('%s.qcow2' % mode)
    created = image(path, size='64M', preallocation=mode, mode='0640')
    assert not created.failed, created
    assert created['changed'] and created['action'] == 'created'
    assert created['image']['preallocation'] == state and created['image']['virtual_size'] == 64 << 20
    assert min_kib <= allocated_kib(path) <= max_kib, allocated_kib(path)
    assert oct(os.stat(path).st_mode & 0o777) == '0o640'
    assert created['filesystem']['odirect'] is True and created['filesystem']['type']
    again = image(path, size='64M', preallocation=mode, mode='0640')
    assert not again['changed'] and again['action'] == 'none'


def test_check_mode_leaves_no_file_and_diff_shows_the_plan(tmp_path):
    path = tmp_path / 'planned.qcow2'
    result = image(path, check=True, diff=True, size='1G')
    assert result['changed'] and result['action'] == 'created'
    assert not path.exists() and os.listdir(tmp_path) == []
    assert result['diff']['before'] == {} and result['diff']['after']['virtual_size'] == 1 << 30


def test_drift_is_reported_and_left_alone_then_grow_and_never_shrink(tmp_path):
    path = tmp_path / 'thin.qcow2'
    qemu_img.create(str(path), '64M')
    drift = image(path, size='128M')
    assert not drift['changed'] and drift['action'] == 'drift'
    assert drift['drift'] == {'virtual_size': {'have': 64 << 20, 'want': 128 << 20},
                              'preallocation': {'have': 'off', 'want': 'metadata'}}
    assert qemu_img.info(str(path))['virtual-size'] == 64 << 20
    grow = image(path, size='128M', preallocation='off', resize='grow')
    assert grow['changed'] and grow['action'] == 'grown'
    assert qemu_img.info(str(path))['virtual-size'] == 128 << 20
    shrink = image(path, size='64M', preallocation='off', resize='grow')
    assert shrink.failed and 'images are never shrunk' in shrink['msg']
    assert qemu_img.info(str(path))['virtual-size'] == 128 << 20


def write_pattern(path, fmt='qcow2'):
    subprocess.run(['qemu-io', '-f', fmt, '-c', 'write -P 0xab 0 1M', '-c', 'write -P 0x5c 7M 64k', str(path)],
                   check=True, capture_output=True)


@pytest.mark.parametrize('fmt', ['qcow2', 'raw'])
def test_convert_keeps_the_guest_data_and_the_original(tmp_path, fmt):
    path = tmp_path / 'data.img'
    qemu_img.create(str(path), '8M', fmt=fmt)
    write_pattern(path, fmt)
    checksum = qemu_img.guest_sha256(path)
    os.chmod(path, 0o600)
    result = image(path, convert=True, diff=True)
    assert not result.failed, result
    assert result['changed'] and result['action'] == 'converted'
    info = qemu_img.info(str(path))
    assert info['format'] == 'qcow2' and result['image']['preallocation'] == 'metadata'
    assert qemu_img.guest_sha256(path) == checksum
    assert qemu_img.guest_sha256(result['backup_file']) == checksum
    assert qemu_img.info(result['backup_file'])['format'] == fmt
    assert oct(os.stat(path).st_mode & 0o777) == '0o600'
    assert [f for f in os.listdir(tmp_path) if '.kvmio-' in f] == []
    assert image(path, convert=True)['changed'] is False


# L4: what a lock on QEMU's lock bytes means, as the messages say it: QEMU, or any process locking them.
LOCKED_BY = ('is locked by another process (a QEMU process, or any other process that locks bytes 100-299 of the '
             'file as QEMU does)')
# Any process can take such a lock (here a POSIX lock on byte 100, as QEMU's "consistent read" lock).
ANY_LOCKER = ('import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDONLY)\n'
              'fcntl.lockf(fd, fcntl.LOCK_SH, 1, 100)\nprint("locked", flush=True)\ntime.sleep(600)\n')


@pytest.mark.parametrize('holder', ['qemu-io', 'any process'])
def test_an_image_qemu_holds_open_is_never_touched(tmp_path, holder):
    path = tmp_path / 'locked.qcow2'
    qemu_img.create(str(path), '8M')
    if holder == 'qemu-io':
        proc = subprocess.Popen(['qemu-io', '-f', 'qcow2', '-c', 'sleep 20000', str(path)])
        time.sleep(0.5)
    else:
        proc = subprocess.Popen([sys.executable, '-c', ANY_LOCKER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == 'locked\n'
    try:
        for options in ({'convert': True}, {'size': '16M', 'preallocation': 'off', 'resize': 'grow'},
                        {'state': 'absent', 'force': True}):
            result = image(path, **options)
            assert result.failed, options
            assert result['msg'].startswith('%s %s' % (path, LOCKED_BY)), result['msg']
    finally:
        proc.kill()
        proc.wait()
    assert qemu_img.info(str(path))['virtual-size'] == 8 << 20


def test_running_domain_is_named_and_defined_domain_blocks_removal(system_domains):
    factory = system_domains
    name = factory.name('img')
    path = factory.image(name + '.qcow2')
    os.chmod(factory.image_dir, 0o755)
    dom = factory.define(dx.domain(name, [dx.disk(path, 'vda', 'virtio')]))
    refused = image(path, state='absent')
    assert refused.failed
    assert refused['msg'] == '%s is a disk of domain %s; remove it from the domain first, or set force=true' % (path, name)
    dom.create()
    try:
        running = image(path, convert=True)
        assert running.failed
        assert running['msg'] == ('%s is in use by running domain %s, so it is not converted; shut the domain down '
                                  'first' % (path, name))
    finally:
        dom.destroy()
    assert os.path.exists(path)


@pytest.mark.parametrize('setup, options, message', [
    (lambda p: p.mkdir(), {'size': '1G'}, 'is a directory, not an image file'),
    (os.mkfifo, {'size': '1G'}, 'is a FIFO, not a regular file or block device, so not an image'),
    (lambda p: None, {}, 'does not exist and no size was given to create it'),
    (lambda p: None, {'size': 'lots'}, "size 'lots' is not a size"),
    (lambda p: None, {'size': '1G', 'cluster_size': '3K'}, 'cluster_size 3K must be a power of two'),
])
def test_bad_paths_and_options_fail_clearly_and_leave_nothing(tmp_path, setup, options, message):
    path = tmp_path / 'target.qcow2'
    setup(path)
    before = sorted(os.listdir(tmp_path))
    result = image(path, **options)
    assert result.failed and message in result['msg'], result['msg']
    assert sorted(os.listdir(tmp_path)) == before


def test_full_disk_leaves_no_half_written_file(tmp_path):
    small = tmp_path / 'small'
    small.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(small)], check=True)
    try:
        result = image(small / 'big.qcow2', size='64M', preallocation='full')
        assert result.failed and 'big.qcow2' in result['msg']
        assert os.listdir(small) == []
    finally:
        subprocess.run(['umount', str(small)], check=True)


# --- issue 14: attacks on qcow2_create, each reproduced as it happens -----------------------------
# A hostile local user is `nobody` (setpriv); the image directory is world-writable without the sticky
# bit, where symlinks are followed whatever fs.protected_symlinks says.

NOBODY = 65534


def as_nobody(code, *args):
    """Runs Python ``code`` as nobody:nogroup with no supplementary groups (a local user)."""
    subprocess.run(['setpriv', '--reuid=%d' % NOBODY, '--regid=%d' % NOBODY, '--clear-groups', sys.executable,
                    '-c', code] + [str(a) for a in args], check=True)


def digest(path):
    with open(path, 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.fixture
def public_tmp():
    """A directory other users can reach (pytest's own temporary tree is root-only)."""
    path = tempfile.mkdtemp(prefix='kvmio-q14-', dir='/var/tmp')
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    subprocess.run(['rm', '-rf', path], check=False)


@pytest.fixture
def victim(public_tmp):
    """A root-only file a local user would love to overwrite or own: (path, its state now)."""
    secret = public_tmp / 'root-only'
    secret.mkdir(mode=0o700)
    path = secret / 'shadow'
    path.write_bytes(b'root:secret-hash:19000:0:99999:7:::\n' * 100)
    os.chmod(path, 0o600)

    def state():
        st = os.stat(path)
        return digest(path), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
    before = state()
    yield path, state
    assert state() == before, 'the root-only file was changed'


@pytest.fixture
def open_dir(public_tmp):
    """A world-writable image directory (0777, no sticky bit): every user can plant names there."""
    path = public_tmp / 'shared'
    path.mkdir()
    os.chmod(path, 0o777)
    return path


PLANT_TEMPORARIES = r'''
import os, sys
directory, image, victim, first, last = sys.argv[1:6]
for pid in range(int(first), int(last)):
    os.symlink(victim, os.path.join(directory, '.%s.kvmio-%d.tmp' % (image, pid)))
# the new scheme's names cannot be guessed; plant look-alikes of them anyway
for n in range(3):
    fake = os.path.join(directory, '.%s.kvmio-%016x.tmp' % (image, n))
    os.mkdir(fake, 0o777)
    os.symlink(victim, os.path.join(fake, 'new.qcow2'))
'''

RACE_WORK_DIRECTORIES = r'''
import os, sys, time
directory, victim, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.time() + seconds
while time.time() < end:
    for name in os.listdir(directory):
        if '.kvmio-' in name and not name.endswith('.moved') and os.stat(os.path.join(directory, name)).st_uid == 0:
            path = os.path.join(directory, name)
            try:
                os.rename(path, path + '.moved')        # a directory renamed within its parent...
                os.mkdir(path, 0o777)                  # ...and one of ours in its place
                os.symlink(victim, os.path.join(path, 'new.qcow2'))
            except OSError:
                pass
'''


def test_planted_temporary_names_never_lead_root_anywhere(open_dir, victim):
    # S1: symlinks under every temporary name the old scheme used (this process's PID and the next
    # 2,000), look-alike directories of the new one, and a racer renaming work directories.
    victim_path, _state = victim
    fresh = open_dir / 'fresh.qcow2'
    thin = open_dir / 'thin.qcow2'
    qemu_img.create(str(thin), '32M')
    write_pattern(thin)
    checksum = qemu_img.guest_sha256(thin)
    for name in ('fresh.qcow2', 'thin.qcow2'):
        as_nobody(PLANT_TEMPORARIES, open_dir, name, victim_path, os.getpid() - 50, os.getpid() + 2000)
    planted = sorted(os.listdir(open_dir))
    racer = subprocess.Popen(['setpriv', '--reuid=%d' % NOBODY, '--regid=%d' % NOBODY, '--clear-groups',
                              sys.executable, '-c', RACE_WORK_DIRECTORIES, str(open_dir), str(victim_path), '20'])
    try:
        created = image(fresh, size='16M')
        converted = image(thin, convert=True)
    finally:
        racer.kill()
        racer.wait()
    assert not created.failed and created['action'] == 'created', created.get('msg')
    assert not converted.failed and converted['action'] == 'converted', converted.get('msg')
    for path in (fresh, thin):
        assert not os.path.islink(path) and os.stat(path).st_uid == 0
        assert qemu_img.info(str(path))['format'] == 'qcow2'
    assert qemu_img.guest_sha256(thin) == checksum
    assert set(planted) <= set(os.listdir(open_dir)), 'planted names are not ours to remove'


def test_dead_work_directories_are_cleaned_and_look_alikes_left_alone(open_dir, victim):
    # S1 (cleanup): only a dead run's own work directory (root, 0700, not locked) is removed; what a
    # user planted under names like ours (files, symlinks, directories) is neither followed nor removed.
    victim_path, _state = victim
    path = open_dir / 'img.qcow2'
    qemu_img.create(str(path), '8M')
    dead = open_dir / '.img.qcow2.kvmio-00000000000000aa.tmp'         # as a SIGKILLed run leaves it
    dead.mkdir(mode=0o700)
    (dead / 'new.qcow2').write_bytes(b'partial')
    live = open_dir / '.img.qcow2.kvmio-00000000000000bb.tmp'         # a run still working
    live.mkdir(mode=0o700)
    as_nobody(r'''
import os, sys
d, victim = sys.argv[1:3]
os.symlink(victim, os.path.join(d, '.img.qcow2.kvmio-00000000000000cc.tmp'))
os.mkdir(os.path.join(d, '.img.qcow2.kvmio-00000000000000dd.tmp'), 0o700)
os.symlink(victim, os.path.join(d, '.img.qcow2.kvmio-00000000000000dd.tmp', 'new.qcow2'))
os.mkdir(os.path.join(d, '.img.qcow2.kvmio-99999999.tmp'))
os.symlink(os.path.dirname(victim), os.path.join(d, '.img.qcow2.kvmio-99999998.tmp'))
''', open_dir, victim_path)
    planted = sorted(n for n in os.listdir(open_dir) if n.endswith(('cc.tmp', 'dd.tmp', '99.tmp', '98.tmp')))
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = image(path, convert=True)
    finally:
        os.close(fd)
    assert not result.failed, result.get('msg')
    assert result['cleaned'] == [str(dead)] and not dead.exists()
    assert live.is_dir() and planted == sorted(n for n in os.listdir(open_dir)
                                               if n.endswith(('cc.tmp', 'dd.tmp', '99.tmp', '98.tmp')))
    assert os.path.islink(open_dir / '.img.qcow2.kvmio-00000000000000dd.tmp' / 'new.qcow2')


@pytest.fixture
def listener():
    """A TCP port that records whether anything connected to it (an NBD server a guest would name)."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(8)
    server.setblocking(False)

    def connections():
        count = 0
        while True:
            try:
                conn, _addr = server.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1
    yield server.getsockname()[1], connections
    server.close()


def run_as_process(args, timeout=30):
    """The module in its own process, as Ansible runs it, killed if it hangs."""
    result = run_module_bounded('qcow2_create', args, timeout)
    if result is None:
        raise AssertionError('qcow2_create hung on %s' % args)
    return result


def guest_written_header(path, backing, backing_format='raw', size='16M'):
    """A raw disk whose first bytes a guest set to a qcow2 header naming ``backing``."""
    header = str(path) + '.header'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', backing, '-F', backing_format, '-u', header,
                    size], check=True)
    with open(header, 'rb') as source, open(path, 'wb') as disk:
        disk.write(source.read())
        disk.truncate(parse_size(size))
    os.unlink(header)
    return str(path)


def test_a_guest_written_header_never_makes_qemu_img_connect(system_domains, listener):
    # S3 + D1: the header says qcow2 over nbd://; the domain says raw. Nothing may connect (a qemu-img
    # that did would wait for the server forever), the disk stays raw to everyone, and convert refuses
    # (the domain would read qcow2 metadata as its disk).
    port, connections = listener
    factory = system_domains
    name = factory.name('q14-guest')
    disk = guest_written_header(os.path.join(factory.image_dir, name + '.raw'), 'nbd://127.0.0.1:%d' % port)
    factory.define(dx.domain(name, [dx.disk(disk, 'vda', 'virtio', fmt='raw')]))
    checksum = digest(disk)
    checked = run_as_process({'path': disk, 'uri': 'qemu:///system'})
    assert not checked.failed, checked.get('msg')
    assert checked['image']['format'] == 'raw' and checked['format_source'] == 'domain'
    assert checked['used_by'] == [name] and checked['drift'] == {'format': {'have': 'raw', 'want': 'qcow2'}}
    refused = run_as_process({'path': disk, 'convert': True, 'uri': 'qemu:///system'})
    assert refused.failed and refused['msg'].startswith('%s is read as raw by domain %s: converted to qcow2' %
                                                        (disk, name)), refused['msg']
    # The same bytes in a file no domain uses: read as qcow2, but its backing file is never opened.
    loose = guest_written_header(os.path.join(factory.image_dir, 'loose.img'), 'nbd://127.0.0.1:%d' % port)
    loose_check = run_as_process({'path': loose, 'uri': 'qemu:///system'})
    assert not loose_check.failed and loose_check['image']['backing_file'] == 'nbd://127.0.0.1:%d' % port
    loose_convert = run_as_process({'path': loose, 'convert': True, 'extended_l2': True, 'uri': 'qemu:///system'})
    assert loose_convert.failed and 'which is not a local file' in loose_convert['msg'], loose_convert['msg']
    assert connections() == 0, 'qemu-img connected to the URL a guest wrote'
    assert digest(disk) == checksum


def test_a_fifo_in_a_backing_chain_is_never_opened(tmp_path):
    # S3: a FIFO blocks whoever opens it for reading; a header (or a request) naming one must not hang the run.
    fifo = tmp_path / 'pipe'
    os.mkfifo(fifo)
    overlay = tmp_path / 'overlay.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-u', '-b', str(fifo), '-F', 'raw', str(overlay),
                    '16M'], check=True)
    checked = run_as_process({'path': str(overlay), 'preallocation': 'off', 'uri': 'qemu:///system'})
    assert not checked.failed and checked['action'] == 'none', checked.get('msg')
    converted = run_as_process({'path': str(overlay), 'convert': True, 'compat': '0.10', 'preallocation': 'off',
                                'uri': 'qemu:///system'})
    assert converted.failed and converted['msg'] == ('%s is a FIFO, not a regular file or block device, so not an '
                                                     'image' % fifo), converted['msg']
    requested = run_as_process({'path': str(tmp_path / 'new.qcow2'), 'backing_file': str(fifo),
                                'backing_format': 'raw', 'preallocation': 'off', 'uri': 'qemu:///system'})
    assert requested.failed and 'is a FIFO, not a regular file or block device' in requested['msg']
    assert not (tmp_path / 'new.qcow2').exists()
    # An external data file named by the header, now a FIFO: the image is refused before anything opens it.
    data = tmp_path / 'data.raw'
    with_data = tmp_path / 'with-data.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'data_file=%s' % data, str(with_data), '16M'],
                   check=True)
    data.unlink()
    os.mkfifo(data)
    refused = run_as_process({'path': str(with_data), 'uri': 'qemu:///system'})
    assert refused.failed and refused['msg'] == ('%s has an external data file (%s); qcow2_create does not handle '
                                                 'such images' % (with_data, data)), refused['msg']


INJECTIONS = [
    {'backing_format': 'raw,data_file={victim}', 'extended_l2': True},
    {'backing_format': 'raw,data_file={victim}', 'compat': '0.10', 'preallocation': 'off'},
    {'backing_format': 'qcow2,data_file={victim},data_file_raw=on', 'extended_l2': True},
    {'cluster_size': '64K,data_file={victim}', 'extended_l2': True},
    {'preallocation': 'metadata,data_file={victim}', 'extended_l2': True},
    {'compat': '1.1,data_file={victim}', 'extended_l2': True},
]
HOSTILE_NAMES = ['a,data_file=VICTIM.qcow2', '-o preallocation=full.qcow2', 'json:{}.qcow2', 'nbd:127.0.0.1:1.qcow2',
                 'star*[q]?.qcow2', '$(touch pwned);`id`.qcow2']


def test_option_values_and_names_never_become_qemu_img_options(tmp_path, victim):
    # S4: every value that reaches `qemu-img -o` is checked against its choices, so a comma cannot add
    # an option of its own (data_file= truncated, and with compat 0.10 deleted, a root file); and paths
    # and backing names are data: commas, dashes, colons, globs and shell syntax included.
    victim_path, _state = victim
    base = qemu_img.create(str(tmp_path / 'base.raw'), '8M', fmt='raw')
    path = tmp_path / 'thin.qcow2'
    qemu_img.create(str(path), '8M')
    for options in INJECTIONS:
        options = {k: v.format(victim=victim_path) if isinstance(v, str) else v for k, v in options.items()}
        result = image(path, convert=True, backing_file=base, **options)
        assert result.failed, options
        info = qemu_img.info(str(path))
        assert info['format'] == 'qcow2' and not info.get('backing-filename'), options
        assert os.path.exists(victim_path), options
    for number, name in enumerate(HOSTILE_NAMES):
        directory = tmp_path / ('names-%d' % number)
        directory.mkdir()
        target = directory / name.replace('VICTIM', str(victim_path).replace('/', '_'))
        golden = directory / ('base-' + target.name)
        assert not image(golden, size='8M', preallocation='off').failed, name
        created = image(target, backing_file='./' + golden.name, size='8M', preallocation='off')
        assert not created.failed, created.get('msg')
        assert qemu_img.info(str(target))['backing-filename'] == './' + golden.name
        converted = image(target, convert=True, preallocation='metadata', extended_l2=True)
        assert not converted.failed and converted['action'] == 'converted', converted.get('msg')
        assert sorted(os.listdir(directory)) == sorted([target.name, golden.name,
                                                        os.path.basename(converted['backup_file'])])
    assert not (tmp_path / 'pwned').exists() and not os.path.exists('pwned')


def test_backing_files_outside_allowed_roots_are_refused(tmp_path):
    # S5: a backing file is part of what the guest sees; it must live in allowed_roots like the image.
    pool = tmp_path / 'pool'
    pool.mkdir()
    outside = tmp_path / 'host'
    outside.mkdir()
    secret = qemu_img.create(str(outside / 'secret.raw'), '8M', fmt='raw')
    (pool / 'escape.raw').symlink_to(secret)
    inner = qemu_img.create(str(pool / 'inner.qcow2'), None, backing=secret, backing_format='raw')
    roots = {'allowed_roots': [str(pool)], 'preallocation': 'off'}
    for backing, fmt in ((secret, 'raw'), ('../host/secret.raw', 'raw'), ('escape.raw', 'raw'), (inner, 'qcow2')):
        result = image(pool / 'guest.qcow2', backing_file=backing, backing_format=fmt, size='8M', **roots)
        assert result.failed and 'is outside allowed_roots (%s)' % pool in result['msg'], (backing, result['msg'])
        assert not (pool / 'guest.qcow2').exists()
    converted = image(inner, convert=True, extended_l2=True, **roots)
    assert converted.failed and 'backing file %s of %s' % (secret, inner) in converted['msg']
    qemu_img.create(str(pool / 'clean.qcow2'), '8M')
    assert not image(pool / 'ok.qcow2', backing_file='clean.qcow2', size='8M', **roots).failed


def test_convert_refuses_images_that_domains_read_as_raw(system_domains):
    # D1: a domain declares the disk raw, or an overlay names it as its raw backing file.
    factory = system_domains
    direct, through = factory.name('q14-raw'), factory.name('q14-overlay')
    raw = factory.image(direct + '.raw', fmt='raw')
    base = factory.image(through + '-base.raw', fmt='raw')
    top = qemu_img.create(os.path.join(factory.image_dir, through + '.qcow2'), None, backing=base,
                          backing_format='raw')
    factory.define(dx.domain(direct, [dx.disk(raw, 'vda', 'virtio', fmt='raw')]))
    factory.define(dx.domain(through, [dx.disk(top, 'vda', 'virtio')]))
    for path, who in ((raw, direct), (base, '%s (through %s)' % (through, top))):
        checksum = digest(path)
        result = image(path, convert=True)
        assert result.failed, result
        assert result['msg'].startswith('%s is read as raw by domain %s: converted to qcow2' % (path, who)), \
            result['msg']
        assert digest(path) == checksum and [f for f in os.listdir(factory.image_dir) if '.orig' in f] == []


def test_backing_files_of_defined_and_running_domains_are_kept(system_domains):
    # D2: every file of every domain's chain counts as used, though libvirt's inactive XML lists none.
    factory = system_domains
    os.chmod(factory.image_dir, 0o755)
    defined, running = factory.name('q14-defined'), factory.name('q14-running')
    chains = {}
    for name in (defined, running):
        base = factory.image(name + '-base.qcow2')
        top = qemu_img.create(os.path.join(factory.image_dir, name + '.qcow2'), None, backing=base)
        factory.define(dx.domain(name, [dx.disk(top, 'vda', 'virtio')]))
        chains[name] = (top, base)
    refused = image(chains[defined][1], state='absent')
    assert refused.failed and refused['msg'] == ('%s is a disk of domain %s (through %s); remove it from the domain '
                                                 'first, or set force=true' % (chains[defined][1], defined,
                                                                               chains[defined][0]))
    dom = factory.conn.lookupByName(running)
    dom.create()
    try:
        for options in ({'state': 'absent', 'force': True}, {'convert': True}, {'size': '32M', 'resize': 'grow',
                                                                                'preallocation': 'off'}):
            result = image(chains[running][1], **options)
            assert result.failed, options
            assert result['msg'].startswith('%s is in use by running domain %s (through %s), so it is not'
                                            % (chains[running][1], running, chains[running][0])), result['msg']
    finally:
        dom.destroy()
    assert all(os.path.exists(p) for chain in chains.values() for p in chain)
    assert qemu_img.info(chains[running][1])['virtual-size'] == 16 << 20


@pytest.fixture
def loop_device(tmp_path):
    backing = tmp_path / 'loop.raw'
    backing.write_bytes(b'\0' * (16 << 20))
    device = subprocess.run(['losetup', '-f', '--show', str(backing)], check=True, capture_output=True,
                            text=True).stdout.strip()
    node = os.stat(device)
    yield device
    if not os.path.lexists(device) or not stat.S_ISBLK(os.lstat(device).st_mode):    # what the bug did: undo it
        if os.path.lexists(device):
            os.unlink(device)
        os.mknod(device, node.st_mode, node.st_rdev)
    os.chown(device, node.st_uid, node.st_gid)         # and what a chown/chmod through a link did
    os.chmod(device, stat.S_IMODE(node.st_mode))
    for leftover in os.listdir('/dev'):
        if leftover.startswith(os.path.basename(device) + '.') and leftover.endswith('.orig'):
            os.unlink(os.path.join('/dev', leftover))
    subprocess.run(['losetup', '-d', device], check=False)


def test_block_devices_are_never_replaced_or_unlinked(tmp_path, loop_device):
    # D4: convert replaced the device node with a regular file; absent unlinked it.
    link = tmp_path / 'disk'
    link.symlink_to(loop_device)
    for path in (loop_device, str(link)):
        checked = image(path, preallocation='off')
        assert not checked.failed and checked['image']['format'] == 'raw' and checked['action'] == 'drift'
        for options in ({'convert': True}, {'state': 'absent', 'force': True}):
            result = image(path, **options)
            assert result.failed and result['msg'].startswith('%s is a block device; qcow2_create does not' % path), \
                (options, result['msg'])
        assert stat.S_ISBLK(os.stat(loop_device).st_mode)
    assert os.path.islink(link)


def test_a_symlinked_image_keeps_its_link_owner_group_and_mode(tmp_path):
    # W8: the link stays a link, the file it leads to is converted with its owner, group and mode,
    # and the backup is the original file itself (a hard link), not a symlink.
    real_dir, link_dir = tmp_path / 'store', tmp_path / 'links'
    real_dir.mkdir()
    link_dir.mkdir()
    real = real_dir / 'disk.qcow2'
    qemu_img.create(str(real), '8M')
    write_pattern(real)
    checksum = qemu_img.guest_sha256(real)
    os.chown(real, NOBODY, NOBODY)
    os.chmod(real, 0o640)
    original = os.stat(real).st_ino
    link = link_dir / 'disk.qcow2'
    link.symlink_to(real)
    result = image(link, convert=True)
    assert not result.failed and result['action'] == 'converted', result.get('msg')
    assert os.path.islink(link) and os.readlink(link) == str(real)
    st = os.stat(real)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o640)
    assert result['image']['preallocation'] == 'metadata' and qemu_img.guest_sha256(link) == checksum
    backup = result['backup_file']
    assert os.path.dirname(backup) == str(real_dir) and not os.path.islink(backup)
    assert os.stat(backup).st_ino == original and qemu_img.guest_sha256(backup) == checksum


@pytest.mark.parametrize('size, expected', [('1000', 1024), ('1.1G', 1181116416), ('4097', 4608)])
def test_sizes_that_are_not_whole_sectors_are_idempotent(tmp_path, size, expected):
    # W9: qemu-img rounds a size up to a whole sector; a rerun with the same size must find it matching.
    path = tmp_path / 'odd.qcow2'
    created = image(path, size=size)
    assert not created.failed and created['image']['virtual_size'] == expected, created.get('msg')
    again = image(path, size=size)
    assert not again.failed and again['action'] == 'none' and again['changed'] is False, again.get('msg')


def test_an_extended_l2_overlay_is_converted_once(tmp_path):
    # W9: an overlay converted with subclusters is preallocated as far as an overlay can be; a rerun
    # finds it matching instead of converting (and keeping a new .orig) every time.
    base = qemu_img.create(str(tmp_path / 'base.qcow2'), '16M')
    overlay = qemu_img.create(str(tmp_path / 'overlay.qcow2'), None, backing=base)
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x33 1M 64k', overlay], check=True, capture_output=True)
    checksum = qemu_img.guest_sha256(overlay)
    request = {'convert': True, 'extended_l2': True, 'cluster_size': '128K'}
    first = image(overlay, **request)
    assert not first.failed and first['action'] == 'converted', first.get('msg')
    assert first['image']['extended_l2'] is True and first['image']['backing_file'] == base
    assert qemu_img.guest_sha256(overlay) == checksum
    second = image(overlay, **request)
    assert second['action'] == 'none' and second['changed'] is False, second
    assert len([f for f in os.listdir(tmp_path) if f.endswith('.orig')]) == 1


@pytest.mark.parametrize('content', [b'hello, world\n', b'', b'\0' * 1000])
def test_convert_refuses_what_cannot_be_a_disk_image(tmp_path, content):
    # W10: a raw disk is a whole number of 512-byte sectors; a text file is not converted to qcow2.
    path = tmp_path / 'notes.txt'
    path.write_bytes(content)
    result = image(path, convert=True)
    assert result.failed and result['msg'] == ('%s is %d bytes, not a whole number of 512-byte sectors: not a raw '
                                               'disk image, so qcow2_create leaves it alone' % (path, len(content)))
    assert path.read_bytes() == content and os.listdir(tmp_path) == ['notes.txt']


def test_an_overlay_without_size_takes_the_size_of_its_backing_file(tmp_path):
    # W10: the EXAMPLES overlay (no size) works: the size is the backing file's.
    golden = qemu_img.create(str(tmp_path / 'golden.qcow2'), '24M')
    overlay = tmp_path / 'ci-42.qcow2'
    result = image(overlay, backing_file=golden, extended_l2=True, cluster_size='128K')
    assert not result.failed and result['action'] == 'created', result.get('msg')
    info = qemu_img.info(str(overlay))
    assert info['virtual-size'] == 24 << 20 and info['backing-filename'] == golden
    assert info['backing-filename-format'] == 'qcow2' and result['image']['preallocation'] == 'metadata'
    assert image(overlay, backing_file=golden, extended_l2=True, cluster_size='128K')['changed'] is False


def test_check_mode_and_real_runs_report_the_same(tmp_path):
    # W12: check mode names the action as the real run does and counts a mode change as a change.
    path = tmp_path / 'same.qcow2'
    thin = tmp_path / 'thin.qcow2'
    qemu_img.create(str(thin), '8M')
    os.chmod(thin, 0o644)
    steps = [
        (path, {'size': '8M', 'mode': '0600'}, 'created'),
        (path, {'size': '8M', 'mode': '0640'}, 'none'),
        (path, {'size': '16M', 'resize': 'grow', 'mode': '0640'}, 'grown'),
        (thin, {'convert': True}, 'converted'),
        (thin, {'state': 'absent'}, 'removed'),
    ]
    for target, options, action in steps:
        planned = image(target, check=True, **options)
        assert not planned.failed and (planned['action'], planned['changed']) == (action, True), (options, planned)
        done = image(target, **options)
        assert not done.failed and (done['action'], done['changed']) == (action, True), (options, done)
    assert oct(os.stat(path).st_mode & 0o777) == '0o640' and not thin.exists()


def test_hostile_files_give_clear_errors(tmp_path):
    # Never a traceback: undecodable names, a dangling symlink, a read-only filesystem.
    odd = os.fsdecode(b'\xff\xfe-disk.qcow2')
    real = tmp_path / odd
    qemu_img.create(str(real), '8M')
    link = tmp_path / 'nice.qcow2'
    link.symlink_to(real)
    checked = image(link, convert=True)
    assert not checked.failed and checked['action'] == 'converted', checked
    assert checked['backup_file'].startswith(str(tmp_path) + '/\\xff\\xfe-disk.qcow2.')
    overlay = tmp_path / 'over.qcow2'      # a backing name that is not UTF-8, as a header can hold it
    subprocess.run([b'qemu-img', b'create', b'-q', b'-f', b'qcow2', b'-b', b'./\xff\xfe-disk.qcow2', b'-F', b'qcow2',
                    os.fsencode(overlay)], check=True)
    converted = image(overlay, convert=True, extended_l2=True)
    assert not converted.failed and converted['image']['backing_file'] == './\\xff\\xfe-disk.qcow2', converted
    dangling = tmp_path / 'dangling.qcow2'
    dangling.symlink_to(tmp_path / 'nowhere' / 'x.qcow2')
    refused = image(dangling, size='8M')
    assert refused.failed and refused['msg'].startswith('%s is a symbolic link to' % dangling)
    readonly = tmp_path / 'ro'
    readonly.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', str(readonly)], check=True)
    try:
        result = image(readonly / 'x.qcow2', size='8M')
        assert result.failed and result['msg'] == ('cannot make a temporary directory beside %s: Read-only file '
                                                   'system; nothing was changed' % (readonly / 'x.qcow2'))
    finally:
        subprocess.run(['umount', str(readonly)], check=True)


# --- issue 17: a list of images in one call --------------------------------------------------------

def images(entries, check=False, diff=False, **options):
    args = {'images': entries, 'uri': 'qemu:///system'}
    args.update(options)
    return run_module(qcow2_create, args, check_mode=check, diff=diff)


def test_a_list_of_images_in_one_call(tmp_path):
    existing = tmp_path / 'old.qcow2'
    qemu_img.create(str(existing), '8M')
    write_pattern(existing)
    checksum = qemu_img.guest_sha256(existing)
    entries = [{'path': str(tmp_path / 'a.qcow2'), 'size': '16M'},
               {'path': str(tmp_path / 'b.qcow2'), 'size': '8M', 'preallocation': 'falloc', 'mode': '0640'},
               {'path': str(existing), 'convert': True},
               {'path': str(tmp_path / 'gone.qcow2'), 'state': 'absent'}]
    planned = images(entries, check=True, diff=True, mode='0600')
    assert not planned.failed and planned['changed'], planned.get('msg')
    assert [r['action'] for r in planned['images']] == ['created', 'created', 'converted', 'none']
    assert len(planned['diff']) == 4 and planned['diff'][0]['after']['virtual_size'] == 16 << 20
    assert sorted(os.listdir(tmp_path)) == ['old.qcow2']
    done = images(entries, mode='0600')
    assert not done.failed, done.get('msg')
    assert [(r['path'], r['action'], r['changed']) for r in done['images']] == [
        (e['path'], a, a != 'none') for e, a in zip(entries, ['created', 'created', 'converted', 'none'])]
    assert done['images'][1]['image']['preallocation'] == 'falloc'
    assert oct(os.stat(tmp_path / 'b.qcow2').st_mode & 0o777) == '0o640'
    assert oct(os.stat(tmp_path / 'a.qcow2').st_mode & 0o777) == '0o600'
    assert qemu_img.guest_sha256(existing) == checksum and done['images'][2]['backup_file']
    again = images(entries, mode='0600')
    assert again['changed'] is False and {r['action'] for r in again['images']} == {'none'}


def test_a_list_returns_a_summary_per_image_with_the_counts(tmp_path):
    import json
    thin = tmp_path / 'thin.qcow2'
    qemu_img.create(str(thin), '8M')
    entries = [{'path': str(tmp_path / ('new%d.qcow2' % i)), 'size': '8M'} for i in range(3)] + \
        [{'path': str(thin), 'convert': True}]
    full = images(entries, check=True)
    summary = images(entries, result_detail='summary')
    assert not summary.failed, summary.get('msg')
    assert [sorted(r) for r in summary['images']] == [['action', 'backup_file', 'changed', 'cleaned', 'drift',
                                                       'path']] * 4
    assert [(r['path'], r['action']) for r in summary['images']] == [(r['path'], r['action']) for r in full['images']]
    assert summary['counts'] == full['counts'] == {'images': 4, 'changed': 4, 'created': 3, 'converted': 1}
    assert summary['images'][3]['backup_file'] and os.path.exists(summary['images'][3]['backup_file'])
    assert len(json.dumps(summary['images'])) * 2 < len(json.dumps(full['images']))
    # Ansible's echo of the options lists only what each entry sets (not every suboption as null).
    assert summary['invocation']['module_args']['images'][3] == {'path': str(thin), 'convert': True}
    assert None in full['invocation']['module_args']['images'][0].values()
    again = images(entries, result_detail='summary')
    assert again['changed'] is False and again['counts'] == {'images': 4, 'changed': 0, 'none': 4}


def test_a_list_with_one_bad_image_changes_nothing(tmp_path):
    big = tmp_path / 'big.qcow2'
    qemu_img.create(str(big), '32M')
    entries = [{'path': str(tmp_path / 'new.qcow2'), 'size': '8M'},
               {'path': str(big), 'size': '16M'}]                     # a shrink: refused while planning
    result = images(entries)
    assert result.failed and 'images are never shrunk' in result['msg']
    assert sorted(os.listdir(tmp_path)) == ['big.qcow2']
    twice = images([{'path': str(big)}, {'path': str(tmp_path / '.' / 'big.qcow2')}])
    assert twice.failed and 'are the same image' in twice['msg']


def test_a_list_that_fails_while_applying_says_what_was_done(tmp_path):
    small = tmp_path / 'small'
    small.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(small)], check=True)
    try:
        result = images([{'path': str(tmp_path / 'first.qcow2'), 'size': '8M'},
                         {'path': str(small / 'big.qcow2'), 'size': '64M', 'preallocation': 'full'},
                         {'path': str(tmp_path / 'third.qcow2'), 'size': '8M'}])
        assert result.failed and result['failed_image'] == str(small / 'big.qcow2')
        assert result['msg'].startswith('cannot create %s: ' % (small / 'big.qcow2'))
        # Exactly what was done (second review of issue 14, F10: it said "nothing was changed; images done
        # before it: first.qcow2").
        assert result['msg'].endswith('; %s was left as it was. Changed before it: %s (created); not attempted: %s'
                                      % (small / 'big.qcow2', tmp_path / 'first.qcow2', tmp_path / 'third.qcow2')), \
            result['msg']
        assert 'nothing was changed' not in result['msg']
        assert [(r['path'], r['action']) for r in result['images']] == [(str(tmp_path / 'first.qcow2'), 'created')]
        assert os.listdir(small) == [] and not (tmp_path / 'third.qcow2').exists()
    finally:
        subprocess.run(['umount', str(small)], check=True)


def test_the_images_role_makes_one_module_call(tmp_path):
    # Issue 17: the role hands the whole list to one qcow2_create call (one round trip per host);
    # applied twice in one playbook, the second run changes nothing.
    saved = tmp_path / 'registered'
    play = '''
- hosts: hypervisors
  gather_facts: false
  roles:
    - role: kvmio.tuning.images
  post_tasks:
    - name: Keep what the role's module task registered
      ansible.builtin.copy:
        content: "{{ {'registered': __images_result, 'exported': images_results} | to_json }}"
        dest: "%s-%d.json"
        mode: "0600"
'''
    playbook = tmp_path / 'images.yml'
    playbook.write_text(play % (saved, 1) + play % (saved, 2))
    entries = [{'path': str(tmp_path / ('%d.qcow2' % n)), 'size': '8M'} for n in range(3)]
    entries[2]['grow'] = True
    inventory = tmp_path / 'inventory.ini'
    inventory.write_text('[hypervisors]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n'
                         % sys.executable)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.environ['KVMIO_TEST_COLLECTIONS'], ANSIBLE_NOCOLOR='1',
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false',
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', str(inventory), str(playbook),
            '-e', json.dumps({'images_list': entries})]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    runs = [json.loads((tmp_path / ('registered-%d.json' % n)).read_text()) for n in (1, 2)]
    first, second = (run['registered'] for run in runs)
    assert 'results' not in first, 'one qcow2_create call, not a loop'
    assert first['changed'] and [r['action'] for r in first['images']] == ['created'] * 3
    assert not second['changed'] and [r['action'] for r in second['images']] == ['none'] * 3
    assert runs[1]['exported'] == {e['path']: 'none' for e in entries}


# --- issue 14, second review: what the first round left open ----------------------------------------

@pytest.fixture
def root_files(public_tmp):
    """Files only root may change, in a directory only root may enter: a disk-sized file, a qcow2 image
    and a file others may write but not own. Yields {name: path} and checks at the end that none of
    them was changed (content, owner, group, mode) or removed."""
    secret = public_tmp / 'root-only-images'
    secret.mkdir(mode=0o700)
    files = {'data': secret / 'data.raw', 'image': secret / 'image.qcow2', 'shared': public_tmp / 'writable.raw'}
    files['data'].write_bytes(b'\x42' * 4096)
    qemu_img.create(str(files['image']), '8M')
    files['shared'].write_bytes(b'\x17' * 4096)
    for name, path in files.items():
        os.chmod(path, 0o666 if name == 'shared' else 0o600)

    def state():
        return {name: (digest(path), os.stat(path).st_uid, os.stat(path).st_gid, stat.S_IMODE(os.stat(path).st_mode))
                for name, path in files.items()}
    before = state()
    yield {name: str(path) for name, path in files.items()}
    assert state() == before, 'a root file was changed through a name another user planted'


def test_a_link_another_user_planted_at_the_image_name_is_never_followed(open_dir, root_files, loop_device):
    # H1: nobody plants links where root's run will look (the image's own name, a directory on the way),
    # to root's files and to a block device. Following them chowned and chmodded any file or device and
    # removed root's files elsewhere.
    device = os.stat(loop_device)
    as_nobody(r'''
import os, sys
d, data, image, device = sys.argv[1:5]
os.symlink(data, os.path.join(d, 'disk.raw'))
os.symlink(image, os.path.join(d, 'old.qcow2'))
os.symlink(device, os.path.join(d, 'dev.raw'))
os.symlink(os.path.dirname(image), os.path.join(d, 'pool'))
''', open_dir, root_files['data'], root_files['image'], loop_device)
    attempts = [('disk.raw', {'owner': str(NOBODY), 'mode': '0666'}),
                ('disk.raw', {'state': 'absent', 'force': True}),
                ('disk.raw', {'convert': True, 'source_format': 'raw'}),
                ('old.qcow2', {'state': 'absent', 'force': True}),
                ('old.qcow2', {'size': '16M', 'resize': 'grow', 'preallocation': 'off'}),
                ('dev.raw', {'owner': str(NOBODY), 'group': str(NOBODY), 'mode': '0666'}),
                ('pool/image.qcow2', {'state': 'absent', 'force': True}),
                ('pool/data.raw', {'owner': str(NOBODY)})]
    for name, options in attempts:
        result = image(open_dir / name, **options)
        link = open_dir / name.split('/', maxsplit=1)[0]
        assert result.failed, (name, options)
        assert result['msg'].startswith('%s is not followed: the link %s is owned by nobody (uid %d)'
                                        % (open_dir / name, link, NOBODY)), result['msg']
    assert (os.stat(loop_device).st_uid, os.stat(loop_device).st_mode) == (device.st_uid, device.st_mode)
    # The same for a backing file named by a link another user planted: the overlay would show it to a guest.
    overlay = open_dir.parent / 'overlay.qcow2'
    result = image(overlay, backing_file=str(open_dir / 'disk.raw'), backing_format='raw', preallocation='off')
    assert result.failed and result['msg'].startswith(
        'backing_file %s of %s is not followed: the link %s is owned by nobody (uid %d)'
        % (open_dir / 'disk.raw', overlay, open_dir / 'disk.raw', NOBODY)), result['msg']
    assert not overlay.exists()
    # A link root made is followed, but not in a directory others can write (they could replace it).
    os.unlink(open_dir / 'disk.raw')
    os.symlink(root_files['data'], open_dir / 'disk.raw')
    result = image(open_dir / 'disk.raw', owner=str(NOBODY))
    assert result.failed and result['msg'].startswith(
        '%s is not followed: the link %s lies in a directory another user can change (%s is writable by others'
        % (open_dir / 'disk.raw', open_dir / 'disk.raw', open_dir)), result['msg']


def test_block_devices_and_hard_links_keep_their_owner_and_mode(open_dir, root_files, loop_device):
    # H1: a device node's owner and mode are udev's (changed only when asked with block_device_attributes),
    # and a file with another name (a hard link nobody made in a directory others can write; the file
    # is writable by others, so fs.protected_hardlinks allows the link) is never given an owner or mode.
    device = os.stat(loop_device)
    refused = image(loop_device, owner=str(NOBODY), mode='0666')
    assert refused.failed and refused['msg'].startswith('%s is a block device: its owner, group and mode are left to '
                                                        'udev' % loop_device), refused['msg']
    assert (os.stat(loop_device).st_uid, os.stat(loop_device).st_mode) == (device.st_uid, device.st_mode)
    asked = image(loop_device, mode='0660', block_device_attributes=True, preallocation='off')
    assert not asked.failed and asked['changed'] and stat.S_IMODE(os.stat(loop_device).st_mode) == 0o660
    os.chmod(loop_device, stat.S_IMODE(device.st_mode))
    as_nobody('import os, sys; os.link(sys.argv[1], sys.argv[2])', root_files['shared'], open_dir / 'linked.raw')
    for options in ({'owner': str(NOBODY)}, {'mode': '0644'}):
        result = image(open_dir / 'linked.raw', **options)
        assert result.failed and result['msg'].startswith(
            '%s has 2 names (hard links) and lies in a directory another user can change' % (open_dir / 'linked.raw')), \
            result['msg']
    # The same request in a directory only root can change is done as asked.
    private = open_dir.parent / 'private'
    private.mkdir(mode=0o755)
    own = private / 'own.raw'
    own.write_bytes(b'\0' * 4096)
    os.link(own, private / 'other-name.raw')
    done = image(own, mode='0640')
    assert not done.failed and stat.S_IMODE(os.stat(own).st_mode) == 0o640, done.get('msg')


def test_every_name_of_a_used_file_is_used(system_domains):
    # M1: a bind mount and a hard link give a domain's raw disk other names; the used-by checks knew it
    # only by the name the domain gives it, so convert and absent went ahead under another name.
    factory = system_domains
    name = factory.name('q14-alias')
    pool = pathlib.Path(factory.image_dir) / 'pool'
    pool.mkdir()
    disk = qemu_img.create(str(pool / 'disk.raw'), '8M', fmt='raw')
    factory.define(dx.domain(name, [dx.disk(disk, 'vda', 'virtio', fmt='raw')]))
    os.link(disk, pool / 'disk-link.raw')
    alias = pathlib.Path(factory.image_dir) / 'alias'
    alias.mkdir()
    subprocess.run(['mount', '--bind', str(pool), str(alias)], check=True)
    try:
        checksum = digest(disk)
        for other in (alias / 'disk.raw', pool / 'disk-link.raw', alias / 'disk-link.raw'):
            converted = image(other, convert=True)
            assert converted.failed and converted['msg'].startswith(
                '%s is read as raw by domain %s: converted to qcow2' % (other, name)), converted['msg']
            removed = image(other, state='absent')
            assert removed.failed and removed['msg'] == (
                '%s is a disk of domain %s; remove it from the domain first, or set force=true' % (other, name))
            assert image(other, check=True)['used_by'] == [name]
        assert digest(disk) == checksum and sorted(os.listdir(pool)) == ['disk-link.raw', 'disk.raw']
    finally:
        subprocess.run(['umount', str(alias)], check=True)


def overlay_chain(directory, depth, base):
    """``depth`` qcow2 overlays on ``base``, each naming the one below by a relative name; returns the top.
    (``-u``: qemu-img would otherwise open the whole chain below each new layer.)"""
    below = base
    for level in range(depth):
        path = os.path.join(directory, 'layer-%03d.qcow2' % level)
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-u', '-b', os.path.basename(below), '-F',
                        'qcow2' if level else 'raw', path, '8M'], check=True)
        below = path
    return below


def test_deep_chains_and_data_files_count_as_used(system_domains):
    # M2: the usage walk stopped after 16 files, and at a layer with an external data file, so the files
    # past them (a base image, the data file itself) could be removed under a defined domain.
    factory = system_domains
    deep, with_data = factory.name('q14-deep'), factory.name('q14-data')
    directory = os.path.join(factory.image_dir, 'deep')
    os.mkdir(directory)
    base = qemu_img.create(os.path.join(directory, 'base.raw'), '8M', fmt='raw')
    top = overlay_chain(directory, 24, base)
    factory.define(dx.domain(deep, [dx.disk(top, 'vda', 'virtio')]))
    data_dir = os.path.join(factory.image_dir, 'data')
    os.mkdir(data_dir)
    data_base = qemu_img.create(os.path.join(data_dir, 'base.qcow2'), '8M')
    middle = os.path.join(data_dir, 'middle.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'data_file=middle.data', '-b', 'base.qcow2',
                    '-F', 'qcow2', middle, '8M'], check=True, cwd=data_dir)
    data_top = qemu_img.create(os.path.join(data_dir, 'top.qcow2'), None, backing=middle)
    factory.define(dx.domain(with_data, [dx.disk(data_top, 'vda', 'virtio')]))
    for path, who in ((base, deep), (os.path.join(directory, 'layer-001.qcow2'), deep),
                      (data_base, with_data), (os.path.join(data_dir, 'middle.data'), with_data)):
        result = image(path, state='absent')
        assert result.failed and result['msg'].startswith('%s is a disk of domain %s (through ' % (path, who)), \
            (path, result['msg'])
        assert os.path.exists(path)


@pytest.mark.parametrize('request_, holder, doing', [
    ({'state': 'absent', 'force': True}, ['qemu-io', '-f', 'qcow2'], 'removed'),
    # A QEMU reading the image (a read-only disk) does not stop qemu-img convert, only the re-check does.
    ({'convert': True}, ['qemu-io', '-r', '-f', 'qcow2'], 'converted'),
])
def test_a_qemu_that_starts_between_plan_and_change_keeps_the_image(tmp_path, request_, holder, doing):
    # M3: QEMU's locks were read only while planning; a QEMU that took the image after that (here while
    # the run writes another image of its list, the run held still with SIGSTOP meanwhile) lost it.
    big, doomed = tmp_path / 'big.qcow2', tmp_path / 'doomed.qcow2'
    qemu_img.create(str(doomed), '8M')
    checksum = digest(doomed)
    args = {'images': [{'path': str(big), 'size': '512M', 'preallocation': 'full'},
                       dict(request_, path=str(doomed))], 'uri': 'qemu:///system'}
    proc, args_file = start_module_process('qcow2_create', args)
    started = None
    try:
        deadline = time.monotonic() + 60
        while not [n for n in os.listdir(tmp_path) if n.startswith('.big.qcow2.kvmio-')]:
            assert time.monotonic() < deadline and proc.poll() is None, 'the run never started writing big.qcow2'
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGSTOP)         # planned, applying the first image: hold it there
        started = subprocess.Popen(holder + ['-c', 'sleep 60000', str(doomed)])
        probe = os.open(doomed, os.O_RDONLY)
        try:
            while not qemu_holds(probe):
                assert started.poll() is None, 'qemu-io did not start'
                time.sleep(0.05)
        finally:
            os.close(probe)
        assert not big.exists(), 'the run got past its first image before the QEMU started'
        os.killpg(proc.pid, signal.SIGCONT)
        result = finish_module_process(proc, args_file, timeout=300)
    finally:
        if started is not None:
            started.kill()
            started.wait()
    assert result.failed and result['failed_image'] == str(doomed), result
    assert result['msg'].startswith('%s was locked by another process (a QEMU process, or any other process that locks '
                                    'bytes 100-299 of the file as QEMU does) while this run worked on it, so it is '
                                    'not %s' % (doomed, doing)), result['msg']
    assert digest(doomed) == checksum and [r['action'] for r in result['images']] == ['created']
    assert not [n for n in os.listdir(tmp_path) if n.endswith('.orig')]


def test_a_relative_backing_name_means_one_file_or_is_refused(system_domains):
    # L1: an image named through a link (W8) records 'base.qcow2': QEMU, given the link's path, reads the
    # base beside the link; the checks read the one beside the real file. Two files, one name.
    factory = system_domains
    real_dir, named_dir = pathlib.Path(factory.image_dir) / 'store', pathlib.Path(factory.image_dir) / 'named'
    real_dir.mkdir()
    named_dir.mkdir()
    decoy = qemu_img.create(str(real_dir / 'base.qcow2'), '8M')
    wanted = qemu_img.create(str(named_dir / 'base.qcow2'), '8M')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-u', '-b', 'base.qcow2', '-F', 'qcow2',
                    str(real_dir / 'top.qcow2'), '8M'], check=True)
    path = named_dir / 'top.qcow2'
    path.symlink_to(real_dir / 'top.qcow2')
    converted = image(path, convert=True, extended_l2=True)
    assert converted.failed and converted['msg'] == (
        '%s names base.qcow2, which is %s seen from the real directory of the image and %s seen from the '
        'directory it was named in (%s); name the file by an absolute path, or name the image by its real path'
        % (path, decoy, wanted, named_dir)), converted['msg']
    new = named_dir / 'new.qcow2'
    requested = image(new, backing_file='top.qcow2', preallocation='off')      # an overlay of the link: same
    assert requested.failed and 'names base.qcow2, which is ' in requested['msg'] and not new.exists()
    # A domain given the link: both files count as its (QEMU reads one, the checks read the other).
    name = factory.name('q14-relative')
    factory.define(dx.domain(name, [dx.disk(str(path), 'vda', 'virtio')]))
    for base in (decoy, wanted):
        removed = image(base, state='absent')
        assert removed.failed and removed['msg'].startswith('%s is a disk of domain %s (through ' % (base, name)), \
            removed['msg']
    # Named by its real path, the image is converted as asked (QEMU then reads the base beside it).
    by_real = image(real_dir / 'top.qcow2', convert=True, extended_l2=True)
    assert not by_real.failed and by_real['action'] == 'converted', by_real.get('msg')


def test_the_file_behind_a_domain_s_loop_device_is_used(system_domains, loop_device):
    # L3: a domain's disk is a loop device; the file behind it is the disk's data, and was removable.
    factory = system_domains
    name = factory.name('q14-loop')
    factory.define(dx.domain(name, [dx.disk(loop_device, 'vda', 'virtio', fmt='raw', source_type='block')]))
    backing = subprocess.run(['losetup', '-n', '-O', 'BACK-FILE', loop_device], check=True, capture_output=True,
                             text=True).stdout.strip()
    # (Other domains on this host may name the same loop device: the message names them all.)
    removed = image(backing, state='absent')
    assert removed.failed and removed['msg'].startswith('%s is a disk of domain ' % backing), removed['msg']
    assert '%s (through %s (a loop device on %s))' % (name, loop_device, backing) in removed['msg']
    converted = image(backing, convert=True)
    assert converted.failed and converted['msg'].startswith('%s is read as raw by domain ' % backing)
    assert name in converted['msg'], converted['msg']
    assert os.path.exists(backing)


def test_an_image_name_too_long_for_the_backup_name_is_converted(tmp_path):
    # L5: 'NAME.<stamp>.orig' is 22 bytes longer than NAME: a 250-byte name failed after the whole conversion.
    path = tmp_path / ('d' * 246 + '.raw')
    qemu_img.create(str(path), '8M', fmt='raw')
    write_pattern(path, 'raw')
    checksum = qemu_img.guest_sha256(path)
    result = image(path, convert=True)
    assert not result.failed and result['action'] == 'converted', result.get('msg')
    backup = os.path.basename(result['backup_file'])
    assert len(backup.encode()) <= 255 and backup.endswith('.orig') and backup.startswith('d' * 200)
    assert qemu_img.guest_sha256(path) == checksum and qemu_img.guest_sha256(result['backup_file']) == checksum


def test_a_disk_on_a_hung_mount_makes_users_unknown_not_a_hung_run(tmp_path, hung_mount, private_libvirt):
    # M4: another domain's disk on a dead mount (a FUSE daemon that never answers) hung every run that
    # read the domains' chains, forever, holding its locks. Now each walk is bounded (one wait per
    # mount): that domain's users are unknown, which refuses removals and conversions unless asked.
    uri = private_libvirt(dx.domain('far', [dx.disk(os.path.join(hung_mount, 'far.qcow2'), 'vda', 'virtio'),
                                            dx.disk(os.path.join(hung_mount, 'far-data.qcow2'), 'vdb', 'virtio')]),
                          dx.domain('near', [dx.disk(os.path.join(hung_mount, 'near.qcow2'), 'vda', 'virtio')]))
    loose = qemu_img.create(str(tmp_path / 'loose.qcow2'), '8M')
    started = time.monotonic()
    removed = run_as_process({'path': loose, 'state': 'absent', 'uri': uri}, timeout=120)
    assert time.monotonic() - started < 60, 'one bounded wait per dead mount'
    assert removed.failed and removed['msg'].startswith('cannot check whether a domain uses %s (domain ' % loose), \
        removed['msg']
    # The first disk read waits 10 s; the others on that mount are not tried (the domains come in any order).
    disks = [os.path.join(hung_mount, n) for n in ('far.qcow2', 'far-data.qcow2', 'near.qcow2')]
    waited = [d for d in disks if 'disk %s: the read of %s did not finish within 10 s' % (d, d) in removed['msg']]
    skipped = [d for d in disks if 'disk %s: not read: an earlier read on %s did not finish within 10 s'
               % (d, hung_mount) in removed['msg']]
    assert len(waited) == 1 and sorted(waited + skipped) == sorted(disks), removed['msg']
    converted = run_as_process({'path': loose, 'convert': True, 'extended_l2': True, 'uri': uri}, timeout=120)
    assert converted.failed and 'cannot check whether a domain reads %s as another format than qcow2' % loose \
        in converted['msg'], converted['msg']
    vouched = run_as_process({'path': loose, 'convert': True, 'extended_l2': True, 'source_format': 'qcow2',
                              'uri': uri}, timeout=120)
    assert not vouched.failed and vouched['action'] == 'converted', vouched.get('msg')
    created = run_as_process({'path': str(tmp_path / 'new.qcow2'), 'size': '8M', 'uri': uri}, timeout=120)
    assert not created.failed and created['action'] == 'created', created.get('msg')
    forced = run_as_process({'path': loose, 'state': 'absent', 'force': True, 'uri': uri}, timeout=120)
    assert not forced.failed and not os.path.exists(loose), forced.get('msg')


def test_a_chain_deeper_than_libvirt_reads_makes_users_unknown(tmp_path, private_libvirt):
    # M2: past libvirt's own limit (200 files) nobody can tell what the chain uses: removals and
    # conversions are refused unless forced, naming the disk.
    deep = tmp_path / 'deep'
    deep.mkdir()
    top = overlay_chain(str(deep), 205, qemu_img.create(str(deep / 'base.raw'), '8M', fmt='raw'))
    uri = private_libvirt(dx.domain('deep', [dx.disk(top, 'vda', 'virtio')]))
    loose = qemu_img.create(str(tmp_path / 'loose.qcow2'), '8M')
    removed = run_as_process({'path': loose, 'state': 'absent', 'uri': uri}, timeout=120)
    assert removed.failed and removed['msg'].startswith(
        'cannot check whether a domain uses %s (domain deep, disk %s: the backing chain of %s is longer than 200 files)'
        % (loose, top, top)), removed['msg']
    in_chain = run_as_process({'path': str(deep / 'layer-100.qcow2'), 'state': 'absent', 'uri': uri}, timeout=120)
    assert in_chain.failed and in_chain['msg'].startswith('%s is a disk of domain deep (through '
                                                          % (deep / 'layer-100.qcow2')), in_chain['msg']
    assert os.path.exists(loose) and os.path.exists(deep / 'layer-100.qcow2')


UNREACHABLE = 'qemu+unix:///system?socket=/nonexistent/libvirt-sock'


def test_a_header_a_guest_wrote_does_not_drive_a_conversion(tmp_path, root_files):
    # M5: with libvirt out of reach, the file's own first bytes chose the format: a qcow2 header a guest
    # wrote into its raw disk made convert rewrite the disk as that qcow2 (raw -> qcow2 needed force,
    # qcow2 -> qcow2 did not). And a header naming a host file as its backing file got that file kept
    # as the backing file of the converted image, for any guest given it.
    disk = guest_written_header(tmp_path / 'guest.raw', 'inner.raw', size='8M')
    qemu_img.create(str(tmp_path / 'inner.raw'), '8M', fmt='raw')
    checksum = digest(disk)
    refused = image(disk, convert=True, extended_l2=True, uri=UNREACHABLE)
    assert refused.failed and refused['msg'].startswith(
        'cannot check whether a domain reads %s as another format than qcow2 (libvirt cannot be asked); set '
        'source_format' % disk), refused['msg']
    assert digest(disk) == checksum and not [n for n in os.listdir(tmp_path) if n.endswith('.orig')]
    as_raw = image(disk, convert=True, source_format='raw', uri=UNREACHABLE)
    assert not as_raw.failed and as_raw['action'] == 'converted' and as_raw['format_source'] == 'source_format'
    assert not qemu_img.info(disk).get('backing-filename'), 'converted as the raw disk it is'
    # A loose file (no domain uses it) whose header names a root-only host file as its backing file.
    loose = guest_written_header(tmp_path / 'loose.img', root_files['data'], size='8M')
    kept = image(loose, convert=True, extended_l2=True)
    assert kept.failed and kept['msg'].startswith(
        '%s names %s as its backing file, outside %s; a conversion keeps such a backing file only inside the '
        'directory of the image or allowed_roots' % (loose, root_files['data'], tmp_path)), kept['msg']
    assert qemu_img.info(loose)['format'] == 'qcow2' and not [n for n in os.listdir(tmp_path) if 'loose' in n
                                                              and n.endswith('.orig')]


def test_a_relative_disk_path_in_a_domain_is_read_from_the_root(system_domains):
    # L8: libvirt keeps <source file='var/...'/> as written, and QEMU under libvirtd opens it from '/';
    # the usage walk resolved it against the module's own working directory, so the disk was not used.
    factory = system_domains
    name = factory.name('q14-relative-disk')
    disk = qemu_img.create(os.path.join(factory.image_dir, name + '.raw'), '8M', fmt='raw')
    factory.define(dx.domain(name, [dx.disk(disk.lstrip('/'), 'vda', 'virtio', fmt='raw')]))
    assert "<source file='%s'/>" % disk.lstrip('/') in factory.conn.lookupByName(name).XMLDesc(0)
    converted = image(disk, convert=True)
    assert converted.failed and converted['msg'].startswith('%s is read as raw by domain %s' % (disk, name)), \
        converted['msg']
    removed = image(disk, state='absent')
    assert removed.failed and removed['msg'].startswith('%s is a disk of domain %s' % (disk, name))


def test_the_lock_of_an_image_is_removed_when_the_run_ends(tmp_path):
    # L8: every image path ever handled left a lock file in the lock directory.
    from ansible_collections.kvmio.tuning.plugins.module_utils._lock import lock_path

    paths = [tmp_path / ('%d.qcow2' % n) for n in range(3)]
    assert not image(paths[0], size='8M').failed
    assert not images([{'path': str(p), 'size': '8M'} for p in paths]).failed
    assert [p for p in paths if os.path.exists(lock_path(str(p)))] == []
