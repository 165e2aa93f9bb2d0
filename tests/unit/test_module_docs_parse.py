# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every module's DOCUMENTATION, EXAMPLES and RETURN parse as YAML (a plain scalar with ': ' in it
does not), caught here in a second rather than by ansible-test sanity."""

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
