# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""qcow2_create with the real qemu-img on real files, QEMU's image locks and libvirtd."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from ansible_collections.kvmio.tuning.plugins.modules import qcow2_create
from helpers import domain_xml as dx
from helpers import qemu_img
from helpers.modules import run_module


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
    assert result['changed'] and result['action'] == 'create'
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


def test_an_image_qemu_holds_open_is_never_touched(tmp_path):
    path = tmp_path / 'locked.qcow2'
    qemu_img.create(str(path), '8M')
    holder = subprocess.Popen(['qemu-io', '-f', 'qcow2', '-c', 'sleep 20000', str(path)])
    try:
        time.sleep(0.5)
        for options in ({'convert': True}, {'size': '16M', 'preallocation': 'off', 'resize': 'grow'},
                        {'state': 'absent', 'force': True}):
            result = image(path, **options)
            assert result.failed, options
            assert result['msg'].startswith('%s is in use by another process (QEMU holds its write lock)' % path)
    finally:
        holder.kill()
        holder.wait()
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
        assert running['msg'].startswith('%s is in use by running domain %s (QEMU holds its write lock)' % (path, name))
    finally:
        dom.destroy()
    assert os.path.exists(path)


def test_killed_conversion_leaves_the_original_and_the_next_run_cleans_up(tmp_path):
    path = tmp_path / 'victim.qcow2'
    qemu_img.create(str(path), '8M')
    write_pattern(path)
    checksum = qemu_img.guest_sha256(path)
    dead = subprocess.Popen(['true'])
    dead.wait()
    leftover = tmp_path / ('.victim.qcow2.kvmio-%d.tmp' % dead.pid)     # as a SIGKILLed run leaves it
    leftover.write_bytes(b'partial')
    result = image(path, convert=True)
    assert not result.failed, result
    assert result['cleaned'] == [str(leftover)] and not leftover.exists()
    assert qemu_img.guest_sha256(path) == checksum


@pytest.mark.parametrize('setup, options, message', [
    (lambda p: p.mkdir(), {'size': '1G'}, 'is a directory, not an image file'),
    (os.mkfifo, {'size': '1G'}, 'is not a regular file or block device, so not an image'),
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
