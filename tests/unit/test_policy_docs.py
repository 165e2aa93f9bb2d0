# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The docs say what the code decides: every rule, advisory and host feature version of the one table
in _disk_policy/_support appears in docs/disk-policy.md and in the audit module's documentation, and the
role docs point to the decision table instead of restating it."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import ADVISORIES, DISK_RULES, SEVERITIES, \
    THIN_QCOW2
from ansible_collections.kvmio.tuning.plugins.module_utils._findings import DOMAIN_ADVISORIES
from ansible_collections.kvmio.tuning.plugins.module_utils._live_plan import LIVE_ADVISORIES
from ansible_collections.kvmio.tuning.plugins.module_utils._support import FEATURES, fmt_version
from ansible_collections.kvmio.tuning.plugins.modules import kvm_io_info

REPO = os.path.join(os.path.dirname(__file__), '..', '..')
CHECKS = DISK_RULES + ADVISORIES + (THIN_QCOW2,) + DOMAIN_ADVISORIES + LIVE_ADVISORIES


def read(*parts):
    with open(os.path.join(REPO, *parts), encoding='utf-8') as handle:
        return handle.read()


POLICY_DOC = read('docs', 'disk-policy.md')


def table_row(code, second=None):
    """The cells of the docs table row that starts with ``code`` (and whose second cell is in ``second``)."""
    for line in POLICY_DOC.splitlines():
        if line.startswith('| `%s` |' % code):
            cells = [cell.strip() for cell in line.strip('|').split('|')]
            if second is None or cells[1] in second:
                return cells
    return None


@pytest.mark.parametrize('check', CHECKS, ids=lambda c: c.code)
def test_every_rule_and_advisory_is_in_the_policy_doc_with_its_severity(check):
    row = table_row(check.code, SEVERITIES)
    assert row is not None, 'docs/disk-policy.md has no table row for %s' % check.code
    assert row[1] == check.severity, (check.code, row)


@pytest.mark.parametrize('check', CHECKS, ids=lambda c: c.code)
def test_every_code_is_in_the_audit_module_docs(check):
    assert 'C(%s)' % check.code in kvm_io_info.DOCUMENTATION, check.code


def test_the_module_docs_grade_each_code_as_the_table_does():
    description = ' '.join(yaml.safe_load(kvm_io_info.DOCUMENTATION)['description'])
    for severity in ('critical', 'high', 'medium', 'low'):
        part = description.split('V(%s)' % severity, 1)[1].split(';', 1)[0]
        documented = set(re.findall(r'C\(([a-z_0-9]+)\)', part))
        assert documented == {c.code for c in CHECKS if c.severity == severity and c not in LIVE_ADVISORIES}, severity


@pytest.mark.parametrize('feature', sorted(FEATURES))
def test_every_feature_version_is_in_the_policy_doc(feature):
    row = table_row(feature)
    assert row is not None, 'docs/disk-policy.md has no host feature row for %s' % feature
    for cell, version in zip(row[1:4], FEATURES[feature][:3]):
        assert cell == (fmt_version(version) if version != (0, 0, 0) else '-'), (feature, row)


@pytest.mark.parametrize('path', [('roles', 'disk_policy', 'README.md'), ('roles', 'disk_policy', 'defaults', 'main.yml'),
                                  ('roles', 'audit', 'README.md')])
def test_role_docs_link_the_decision_table(path):
    assert 'docs/disk-policy.md' in read(*path)
