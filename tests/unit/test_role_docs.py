# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Role READMEs are Markdown for people (Galaxy renders them): no Ansible doc markup in them, and
every variable of a role's argument_specs is documented in its README."""

from __future__ import annotations

import glob
import os
import re

import pytest
import yaml

ROLES = os.path.join(os.path.dirname(__file__), '..', '..', 'roles')
READMES = sorted(glob.glob(os.path.join(ROLES, '*', 'README.md')))


@pytest.mark.parametrize('path', READMES, ids=lambda p: p.split(os.sep)[-2])
def test_no_ansible_markup_in_role_readmes(path):
    with open(path, encoding='utf-8') as handle:
        text = handle.read()
    assert not re.findall(r'\b[CMVORIBLU]\([^)]*\)', text)


@pytest.mark.parametrize('path', READMES, ids=lambda p: p.split(os.sep)[-2])
def test_every_role_variable_is_in_its_readme(path):
    role = os.path.dirname(path)
    with open(os.path.join(role, 'meta', 'argument_specs.yml'), encoding='utf-8') as handle:
        specs = yaml.safe_load(handle)['argument_specs']
    with open(path, encoding='utf-8') as handle:
        text = handle.read()
    missing = [name for entry in specs.values() for name in entry.get('options', {}) if name not in text]
    assert not missing, missing


def test_cpu_pinning_role_variables_are_named_after_the_module_options():
    # A reader of iothread_pin's docs finds each role variable by the option's name.
    with open(os.path.join(ROLES, 'cpu_pinning', 'tasks', 'main.yml'), encoding='utf-8') as handle:
        tasks = yaml.safe_load(handle)
    args = next(task['kvmio.tuning.iothread_pin'] for task in tasks if 'kvmio.tuning.iothread_pin' in task)
    misnamed = {option: value for option, value in args.items()
                if not re.match(r'^\{\{ cpu_pinning_%s\b' % option, str(value))}
    assert not misnamed, misnamed
