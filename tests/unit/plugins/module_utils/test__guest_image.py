# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guest cache: only a directory of ours, only files whose hashes match, user files checked."""

from __future__ import annotations

import gzip
import hashlib
import json
import os

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils import _guest_image as gi
from ansible_collections.kvmio.tuning.plugins.module_utils._errors import KvmioError
from ansible_collections.kvmio.tuning.plugins.module_utils._initramfs import cpio_archive


def test_cache_directory_is_one_only_root_or_we_can_change(tmp_path):
    # The rule backups use (_trusted_files): nobody else may write the directory or one above it.
    made = gi.private_directory(str(tmp_path / 'new' / 'cache'))
    assert os.stat(made).st_mode & 0o777 == 0o700
    open_dir = tmp_path / 'open'
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    with pytest.raises(KvmioError, match='writable'):
        gi.private_directory(str(open_dir))
    theirs = tmp_path / 'theirs'
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    with pytest.raises(KvmioError, match='nobody|65534'):
        gi.private_directory(str(theirs / 'cache'))


def _fake_cache(directory, kernel=b'kernel', initrd=b'initrd'):
    stem = os.path.join(directory, 'linux-image-amd64')
    for suffix, data in (('.vmlinuz', kernel), ('.initrd', initrd)):
        with open(stem + suffix, 'wb') as handle:
            handle.write(data)
        os.chmod(stem + suffix, 0o600)
    manifest = {'recipe': gi.RECIPE, 'kernel_package': 'linux-image-amd64', 'kernel_version': '6.1.0-56-amd64',
                'buses': ['virtio', 'scsi'], 'packages': {'fio': '3.33-3'},
                'sha256': {'kernel': hashlib.sha256(kernel).hexdigest(), 'initrd': hashlib.sha256(initrd).hexdigest()}}
    with open(stem + '.json', 'w', encoding='utf-8') as handle:
        json.dump(manifest, handle)
    os.chmod(stem + '.json', 0o600)
    return stem


def test_cached_guest_is_used_only_while_its_hashes_match(tmp_path):
    cache = gi.private_directory(str(tmp_path / 'cache'))
    stem = _fake_cache(cache)
    image = gi._cached(stem, 'linux-image-amd64')
    assert image.source == 'cache' and image.buses == ('virtio', 'scsi') and image.kernel == stem + '.vmlinuz'
    with open(stem + '.initrd', 'ab') as handle:
        handle.write(b'tampered')
    assert gi._cached(stem, 'linux-image-amd64') is None
    stem = _fake_cache(cache)
    os.chmod(stem + '.vmlinuz', 0o644 | 0o002)
    assert gi._cached(stem, 'linux-image-amd64') is None, 'a file others can write is not trusted'
    stem = _fake_cache(cache)
    os.unlink(stem + '.vmlinuz')
    os.symlink('/etc/hostname', stem + '.vmlinuz')
    assert gi._cached(stem, 'linux-image-amd64') is None, 'a symlink is not followed'
    stem = _fake_cache(cache)
    assert gi._cached(stem, 'linux-image-cloud-amd64') is None, 'another kernel package is another guest'


def test_staged_copies_are_world_readable_and_checked(tmp_path):
    cache = gi.private_directory(str(tmp_path / 'cache'))
    image = gi._cached(_fake_cache(cache), 'linux-image-amd64')
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    kernel, initrd = gi.stage_guest_image(image, str(run_dir))
    assert os.stat(kernel).st_mode & 0o777 == 0o644 and open(initrd, 'rb').read() == b'initrd'
    gi.verify_staged(image, (kernel, initrd))
    with open(initrd, 'wb') as handle:
        handle.write(b'replaced while QEMU owned it')
    with pytest.raises(gi.GuestImageError, match='changed between boots'):
        gi.verify_staged(image, (kernel, initrd))


def test_user_initrd_must_be_one_this_module_built(tmp_path):
    kernel = tmp_path / 'vmlinuz'
    kernel.write_bytes(b'kernel')
    ours = tmp_path / 'ours.img'
    manifest = {'kernel_version': '6.1.0-56-amd64', 'buses': ['virtio', 'sata'], 'packages': {'fio': '3.33-3'}}
    ours.write_bytes(cpio_archive({gi.MANIFEST_IN_INITRD: (0o644, json.dumps(manifest).encode())}))
    image = gi.user_guest_image(str(kernel), str(ours))
    assert image.source == 'user' and image.buses == ('virtio', 'sata')
    assert image.sha256['kernel'] == hashlib.sha256(b'kernel').hexdigest()
    packed = tmp_path / 'ours.img.gz'
    packed.write_bytes(gzip.compress(ours.read_bytes()))
    assert gi.user_guest_image(str(kernel), str(packed)).buses == ('virtio', 'sata')
    other = tmp_path / 'distro-initrd.img'
    other.write_bytes(gzip.compress(cpio_archive({'init': (0o755, b'#!/bin/sh\n')})))
    with pytest.raises(gi.GuestImageError, match='was not built by kvm_io_bench'):
        gi.user_guest_image(str(kernel), str(other))
    with pytest.raises(gi.GuestImageError, match='is not a file'):
        gi.user_guest_image(str(tmp_path / 'missing'), str(ours))
