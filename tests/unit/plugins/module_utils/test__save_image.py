# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_save_image: the directory that holds guest memory during a save/restore, against other users."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._errors import KvmioError
from ansible_collections.kvmio.tuning.plugins.module_utils._save_image import check_free_space, private_directory

NOBODY = 65534


def as_nobody(*argv):
    """Runs a command as an unprivileged user, as an attacker on the hypervisor would."""
    subprocess.run(['setpriv', '--reuid=%d' % NOBODY, '--regid=%d' % NOBODY, '--clear-groups'] + list(argv),
                   check=True)


@pytest.fixture
def world_writable():
    """A sticky, world-writable directory like /tmp, that other users can reach."""
    path = tempfile.mkdtemp(prefix='kvmio-shared-', dir='/tmp')
    os.chmod(path, 0o1777)
    yield pathlib.Path(path)
    shutil.rmtree(path)


def test_created_for_root_only(tmp_path):
    path = tmp_path / 'a' / 'save'
    assert private_directory(str(path)) == str(path)
    assert oct(os.stat(path).st_mode & 0o777) == '0o700' and os.stat(path).st_uid == os.geteuid()
    assert private_directory(str(path)) == str(path), 'an existing private directory is fine'


def test_a_directory_planted_by_another_user_is_refused(world_writable):
    planted = world_writable / 'kvmio-save'
    as_nobody('mkdir', '-m', '0700', str(planted))
    with pytest.raises(KvmioError, match='save_dir: %s is owned by nobody .uid 65534.' % planted):
        private_directory(str(planted))


def test_a_planted_symlink_is_refused(world_writable, tmp_path):
    target = tmp_path / 'root-only'
    target.mkdir(mode=0o700)
    planted = world_writable / 'kvmio-save'
    as_nobody('ln', '-s', str(target), str(planted))
    with pytest.raises(KvmioError, match='save_dir: the link %s is owned by nobody .uid 65534.' % planted):
        private_directory(str(planted))
    assert os.listdir(target) == []


def test_a_link_root_made_is_followed_as_for_backups(tmp_path):
    # One rule for save_dir and backup_dir (_trusted_files): a link root made to a private directory is fine.
    real = tmp_path / 'real'
    real.mkdir(mode=0o700)
    (tmp_path / 'link').symlink_to(real)
    assert private_directory(str(tmp_path / 'link')) == str(real)


def test_a_directory_others_can_enter_is_refused(tmp_path):
    path = tmp_path / 'open'
    path.mkdir()
    os.chmod(path, 0o755)
    with pytest.raises(KvmioError, match='mode 0755'):
        private_directory(str(path))


def test_a_parent_another_user_can_change_is_refused(tmp_path):
    parent = tmp_path / 'theirs'
    parent.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chown(parent, NOBODY, NOBODY)
    with pytest.raises(KvmioError, match='save_dir: %s is owned by nobody .uid 65534.' % parent):
        private_directory(str(parent / 'save'))


def test_free_space_is_checked_against_the_guests_memory(tmp_path):
    assert check_free_space(str(tmp_path), 1 << 20, 'web01') > 0
    with pytest.raises(KvmioError, match=r'domain web01: its save image needs about \d+ MiB .its memory. and'):
        check_free_space(str(tmp_path), 1 << 60, 'web01')
