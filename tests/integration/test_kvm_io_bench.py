# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm_io_bench on a small count (a test, not a benchmark): real qemu-img bench, scratch files cleaned."""

from __future__ import annotations

import os
import pathlib
import stat
import subprocess
import sys
import tempfile

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._host_probe import host_support
from ansible_collections.kvmio.tuning.plugins.module_utils._libvirt import library_version
from ansible_collections.kvmio.tuning.plugins.module_utils._qemu_img import QemuImg, subprocess_runner
from ansible_collections.kvmio.tuning.plugins.modules import kvm_io_bench
from helpers.modules import run_module


def test_small_bench_on_ext4_and_cleanup(tmp_path):
    result = run_module(kvm_io_bench, {'path': str(tmp_path), 'count': 200, 'size': '32M'})
    assert not result.failed, result
    assert result['odirect'] is True
    # Each cache mode runs with the io kvm_disk_tune's io=auto gives it; the baseline is a disk without
    # a cache or io attribute (QEMU runs writeback and threads).
    qemu = QemuImg(subprocess_runner()).version()
    auto_io = 'io_uring' if host_support(qemu, library_version()).has('io_uring') else 'threads'
    assert {(r['cache'], r['io'], r['baseline']) for r in result['results']} == {
        ('writeback', 'threads', True), ('writethrough', auto_io, False), ('writeback', auto_io, False),
        ('none', 'native', False), ('directsync', 'native', False)}
    assert len(result['results']) == 5 * 2 * 2
    assert result['speedup_vs_default'] > 0
    assert all(r['iops'] > 0 for r in result['results'])
    for row in result['results']:
        # Too short for qemu-img's millisecond clock: repeated with 10x the requests, up to 100x, while
        # writes still fit in the 32M image (here they never do: 2000 x 64K > 32M).
        out_of_room = row['workload'] == 'write' and row['count'] * 10 * 65536 > 32 << 20
        assert row['seconds'] >= 0.05 or row['count'] == 200 * 100 or out_of_room, row
        assert row['count'] in (200, 2000, 20000) and (row['workload'] == 'read' or row['count'] == 200), row
    assert result['recommendation']['cache'] in ('writeback', 'none', 'directsync')
    assert os.listdir(tmp_path) == [], 'scratch files are removed'


def test_storage_without_odirect_skips_those_caches(ramfs_dir):
    result = run_module(kvm_io_bench, {'path': ramfs_dir, 'count': 100, 'size': '16M', 'workloads': ['write']})
    assert not result.failed, result
    assert result['odirect'] is False and result['filesystem'] == 'ramfs'
    assert {r['cache'] for r in result['results']} == {'writethrough', 'writeback'}
    # Skipped with the tuner's own refusal.
    assert any(s.startswith('cache=none: vda (') and 'needs O_DIRECT, which ramfs refuses' in s
               for s in result['skipped']), result['skipped']
    assert result['recommendation']['cache'] == 'writeback'
    assert os.listdir(ramfs_dir) == []


def test_refuses_without_free_space_and_honours_the_time_limit(tmp_path):
    small = tmp_path / 'small'
    small.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', str(small)], check=True)
    try:
        refused = run_module(kvm_io_bench, {'path': str(small), 'count': 100, 'size': '64M'})
        assert refused.failed and refused['msg'].startswith('only 8M free in %s' % small)
        assert os.listdir(small) == []
    finally:
        subprocess.run(['umount', str(small)], check=True)
    limited = run_module(kvm_io_bench, {'path': str(tmp_path), 'count': 100, 'size': '16M', 'time_limit': 0})
    assert limited['results'] == [] and all('time_limit of 0 s reached' in s for s in limited['skipped'])


# Issue 14 (second review), H2: another user who can write the measured directory renames each
# directory root makes there and puts one of its own in its place, with links named like the scratch
# files leading to a root-only file.
RACE_SCRATCH_DIRECTORIES = r'''
import os, sys, time
directory, victim, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.time() + seconds
print('ready', flush=True)
while time.time() < end:
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        try:
            if name.endswith('.moved') or os.lstat(path).st_uid != 0:
                continue
            os.rename(path, path + '.moved')
            os.mkdir(path, 0o777)
            for trap in ('bench.qcow2', 'probe'):
                os.symlink(victim, os.path.join(path, trap))
        except OSError:
            pass
'''


@pytest.fixture
def reachable_tmp():
    """A directory other users can reach (pytest's own temporary tree is root-only)."""
    path = tempfile.mkdtemp(prefix='kvmio-bench14-', dir='/var/tmp')
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    subprocess.run(['rm', '-rf', path], check=False)


def test_a_user_who_can_write_the_measured_directory_cannot_lead_root_anywhere(reachable_tmp):
    tmp_path = reachable_tmp
    public = tmp_path / 'public'
    public.mkdir()
    os.chmod(public, 0o777)                      # a pool directory others can write (no sticky bit)
    secret = tmp_path / 'secret'
    secret.mkdir(mode=0o700)
    victim = secret / 'shadow'
    victim.write_bytes(b'root:secret-hash:19000:0:99999:7:::\n' * 100)
    os.chmod(victim, 0o600)
    before = victim.read_bytes()
    racer = subprocess.Popen(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', sys.executable, '-c',
                              RACE_SCRATCH_DIRECTORIES, str(public), str(victim), '120'], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert racer.stdout.readline() == 'ready\n'
        result = run_module(kvm_io_bench, {'path': str(public), 'count': 100, 'size': '16M'})
    finally:
        racer.kill()
        racer.wait()
    assert victim.read_bytes() == before and os.stat(victim).st_uid == 0, 'root wrote through a planted link'
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o600
    assert not result.failed, result.get('msg')
    assert {r['cache'] for r in result['results']} == {'writeback', 'writethrough', 'none', 'directsync'}
    leftovers = [n for n in os.listdir(public) if os.lstat(public / n).st_uid == 0]
    # Ours, renamed by the user (who renames each once): found by its inode and removed too (second review
    # of issue 14, F10: it was left behind, empty).
    assert leftovers == [], leftovers


def test_guest_mode_refuses_a_measured_directory_others_can_write(reachable_tmp):
    # The guest mode (merged since) writes its scratch images and the guest's files by name, for QEMU:
    # the same planted names would lead root anywhere, so a directory others can write is refused.
    public = reachable_tmp / 'public'
    public.mkdir()
    os.chmod(public, 0o777)
    result = run_module(kvm_io_bench, {'mode': 'guest', 'path': str(public), 'runtime': 1, 'size': '64M',
                                       'workloads': ['randwrite'], 'accelerator': 'tcg', 'alternatives': 'none'})
    assert result.failed and result['msg'].startswith(
        'path %s (mode=guest writes its scratch images there by name): %s is writable by others' % (public, public)), \
        result['msg']
    assert os.listdir(public) == []
