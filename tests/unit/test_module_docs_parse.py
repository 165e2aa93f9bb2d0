# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every module's DOCUMENTATION, EXAMPLES and RETURN parse as YAML, and every RETURN key is complete:
description, type and a sample (so ansible-doc shows users what to expect), and lists of records say
what each record contains."""

from __future__ import annotations

import importlib
import os

import pytest
import yaml

MODULE_DIR = os.path.join(os.path.dirname(__file__), '..', '..', 'plugins', 'modules')
MODULES = sorted(name[:-3] for name in os.listdir(MODULE_DIR) if name.endswith('.py'))


def docs(name):
    module = importlib.import_module('ansible_collections.kvmio.tuning.plugins.modules.' + name)
    return {part: yaml.safe_load(getattr(module, part)) for part in ('DOCUMENTATION', 'EXAMPLES', 'RETURN')}


@pytest.mark.parametrize('name', MODULES)
def test_docs_parse(name):
    parsed = docs(name)
    assert parsed['DOCUMENTATION']['module'] == name
    assert parsed['EXAMPLES'] and parsed['RETURN']


def _incomplete(keys, path=''):
    problems = []
    for key, entry in keys.items():
        where = path + key
        for field in ('description', 'type'):
            if field not in entry:
                problems.append('%s: no %s' % (where, field))
        if not path and 'sample' not in entry:
            problems.append('%s: no sample' % where)
        if entry.get('type') == 'list' and entry.get('elements') == 'dict' and 'contains' not in entry:
            problems.append('%s: a list of records without contains' % where)
        problems.extend(_incomplete(entry.get('contains', {}), where + '.'))
    return problems


@pytest.mark.parametrize('name', MODULES)
def test_every_return_key_is_complete(name):
    problems = _incomplete(docs(name)['RETURN'])
    assert problems == [], '\n'.join(problems)
