# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every changelog fragment parses as YAML, each entry one string (a ': ' in a plain scalar breaks it),
caught here rather than only by ``antsibull-changelog lint`` in ``make lint``. Module docs:
test_module_docs_parse.py."""

from __future__ import annotations

import glob
import os

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRAGMENTS = sorted(glob.glob(os.path.join(REPO, 'changelogs', 'fragments', '*.yml')))


@pytest.mark.parametrize('path', FRAGMENTS, ids=[os.path.basename(p) for p in FRAGMENTS])
def test_changelog_fragment_parses(path):
    with open(path, encoding='utf-8') as handle:
        fragment = yaml.safe_load(handle)
    for section, entries in fragment.items():
        if section.startswith('add '):     # new plugins, playbooks and roles: {name, description} entries
            continue
        assert all(isinstance(entry, str) for entry in entries), '%s: every %s entry must be one string' % (
            os.path.basename(path), section)
