# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backups: one 0600 file per domain and time, made durable before any define, errors naming the place."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._backup import sync_backups, write_atomic, write_backup
from ansible_collections.kvmio.tuning.plugins.module_utils._errors import ApplyError


def test_backups_are_private_complete_and_distinct(tmp_path):
    paths = [write_backup(str(tmp_path / 'b'), 'vm/%d' % n, '<domain/>', durable=False) for n in range(20)]
    sync_backups(str(tmp_path / 'b'), paths)
    assert len(set(paths)) == 20 and all(os.path.dirname(p) == str(tmp_path / 'b') for p in paths)
    for path in paths:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path, encoding='utf-8') as handle:
            assert handle.read() == '<domain/>\n'
    assert stat.S_IMODE(os.stat(tmp_path / 'b').st_mode) == 0o700
    assert not [n for n in os.listdir(tmp_path / 'b') if n.endswith('.tmp')]


def test_a_backup_that_cannot_be_flushed_fails_naming_the_directory(tmp_path):
    good = write_backup(str(tmp_path), 'vm', '<domain/>', durable=False)
    os.unlink(good)
    with pytest.raises(ApplyError, match='cannot flush the backups in %s to disk' % tmp_path):
        sync_backups(str(tmp_path), [good])


def test_write_atomic_never_leaves_half_a_file(tmp_path):
    target = tmp_path / 'domain.xml'
    target.write_text('old')

    # A lone surrogate cannot be encoded as UTF-8: the write fails half-way through.
    with pytest.raises(UnicodeEncodeError):
        write_atomic(str(target), 'new' * 10000 + '\udcff')
    assert target.read_text() == 'old'
    assert os.listdir(tmp_path) == ['domain.xml']


def test_backup_names_fit_name_max_whatever_the_domain_name():
    from ansible_collections.kvmio.tuning.plugins.module_utils._backup import BACKUP_NAME_RE, NAME_MAX, backup_name, \
        backup_prefix

    short = backup_name('web01')
    assert short.startswith('web01.') and BACKUP_NAME_RE.match(short).group('prefix') == 'web01'
    long_names = ['x' * 230, 'x' * 229 + 'y', '\u00e9' * 200, '\U0001f600' * 80, 'a/' * 120]
    prefixes = set()
    for name in long_names:
        file_name = backup_name(name)
        assert len(file_name.encode('utf-8')) <= NAME_MAX, name
        assert '/' not in file_name
        file_name.encode('utf-8')                          # never half a character
        assert BACKUP_NAME_RE.match(file_name).group('prefix') == backup_prefix(name)
        prefixes.add(backup_prefix(name))
    assert len(prefixes) == len(long_names), 'names sharing their first bytes still get their own prefix'
    assert backup_prefix('x' * 230) == backup_prefix('x' * 230), 'the same name, the same prefix: restore finds it'


def test_a_backup_dir_that_is_a_link_root_made_is_flushed_through_it(tmp_path):
    # Issue 14, second review (L2): a backup_dir that is a link root made to a root-only directory passes
    # the trust checks, but the flush opened it with O_NOFOLLOW, so every run failed before its defines.
    real = tmp_path / 'real-backups'
    real.mkdir(mode=0o700)
    link = tmp_path / 'backups'
    link.symlink_to(real)
    paths = [write_backup(str(link), 'vm%d' % n, '<domain/>', durable=False) for n in range(3)]
    sync_backups(str(link), paths)
    assert sorted(os.listdir(real)) == sorted(os.path.basename(p) for p in paths)
