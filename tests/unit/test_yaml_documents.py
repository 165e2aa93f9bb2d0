# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every module's DOCUMENTATION, EXAMPLES and RETURN, and every changelog fragment, parse as YAML.

A ': ' inside a plain scalar (``accept it: no``) or a list item under the wrong key breaks ansible-doc
and antsibull-changelog, which only ``make lint`` and sanity run; this catches it in the unit suite.
"""

from __future__ import annotations

import glob
import importlib
import os

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, 'plugins', 'modules', '*.py'))
                 if not p.endswith('__init__.py'))
FRAGMENTS = sorted(glob.glob(os.path.join(REPO, 'changelogs', 'fragments', '*.yml')))


@pytest.mark.parametrize('name', MODULES)
def test_module_documentation_parses(name):
    module = importlib.import_module('ansible_collections.kvmio.tuning.plugins.modules.%s' % name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc['module'] == name and isinstance(doc['description'], list)
    for option, spec in doc.get('options', {}).items():
        assert set(spec) <= {'description', 'type', 'elements', 'default', 'choices', 'required', 'aliases',
                             'suboptions', 'version_added', 'no_log'}, (option, sorted(spec))
    yaml.safe_load(module.EXAMPLES)
    yaml.safe_load(module.RETURN)


@pytest.mark.parametrize('path', FRAGMENTS, ids=[os.path.basename(p) for p in FRAGMENTS])
def test_changelog_fragment_parses(path):
    with open(path, encoding='utf-8') as handle:
        fragment = yaml.safe_load(handle)
    for section, entries in fragment.items():
        if section.startswith('add '):     # new plugins, playbooks and roles: {name, description} entries
            continue
        assert all(isinstance(entry, str) for entry in entries), '%s: every %s entry must be one string' % (
            os.path.basename(path), section)
