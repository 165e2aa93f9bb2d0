# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The storage probe on real images made by qemu-img (the ramfs case is in tests/integration)."""

from __future__ import annotations

import os

from ansible_collections.kvmio.tuning.plugins.module_utils._storage_probe import StorageProber, filesystem_of, \
    read_mounts
from helpers import qemu_img


def test_probe_follows_the_backing_chain_with_relative_names(tmp_path):
    base = qemu_img.create(str(tmp_path / 'base.raw'), '8M', fmt='raw')
    mid = str(tmp_path / 'mid.qcow2')
    top = str(tmp_path / 'top.qcow2')
    qemu_img.create(mid, None, backing='base.raw', backing_format='raw')
    qemu_img.create(top, None, backing='mid.qcow2')
    facts = StorageProber().facts(top, 'qcow2')
    assert facts.kind == 'file' and facts.image_format == 'qcow2'
    assert facts.chain == (os.path.realpath(top), os.path.realpath(mid), os.path.realpath(base))
    assert facts.odirect is True, facts.detail      # /tmp here accepts O_DIRECT (ext4 or tmpfs >= 6.6)


def test_missing_backing_file_makes_the_probe_unsure(tmp_path):
    base = qemu_img.create(str(tmp_path / 'base.qcow2'), '8M')
    top = str(tmp_path / 'top.qcow2')
    qemu_img.create(top, None, backing=base)
    os.unlink(base)
    facts = StorageProber().facts(top, 'qcow2')
    assert facts.odirect is None
    assert facts.detail == 'backing file %s is missing' % os.path.realpath(base)


def test_missing_image(tmp_path):
    facts = StorageProber().facts(str(tmp_path / 'nope.qcow2'), 'qcow2')
    assert (facts.kind, facts.odirect) == ('missing', None)
    assert facts.detail.endswith('nope.qcow2 does not exist on this host')


def test_symlinked_image_is_probed_at_its_target(tmp_path):
    real = qemu_img.create(str(tmp_path / 'real.qcow2'), '8M')
    link = tmp_path / 'link.qcow2'
    link.symlink_to(real)
    facts = StorageProber().facts(str(link), 'qcow2')
    assert facts.path == str(link) and facts.chain == (os.path.realpath(real),)


def test_filesystem_of_picks_the_longest_mountpoint():
    mounts = [('/srv/fast', 'xfs'), ('/srv', 'ext4'), ('/', 'overlay')]
    assert filesystem_of('/srv/fast/a.qcow2', mounts) == ('/srv/fast', 'xfs')
    assert filesystem_of('/srv/fastlane/a.qcow2', mounts) == ('/srv', 'ext4')
    assert filesystem_of('/var/a.qcow2', mounts) == ('/', 'overlay')
    assert read_mounts(), 'this host has a mount table'
