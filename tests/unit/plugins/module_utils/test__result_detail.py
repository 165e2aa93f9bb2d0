# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""result_detail: full returns the entries untouched, summary only the kept keys, in the kept order."""

from __future__ import annotations

from ansible_collections.kvmio.tuning.plugins.module_utils._result_detail import shape_entries

ENTRIES = [{'name': 'web01', 'changed': True, 'restart_required': False, 'disks': [{'target': 'vda'}]},
           {'name': 'db01', 'changed': False, 'restart_required': False, 'disks': []}]


def test_full_is_the_entries_themselves():
    assert shape_entries(ENTRIES, 'full', ('name',)) is ENTRIES


def test_summary_keeps_only_the_named_keys_and_skips_absent_ones():
    shaped = shape_entries(ENTRIES, 'summary', ('name', 'changed', 'active'))
    assert shaped == [{'name': 'web01', 'changed': True}, {'name': 'db01', 'changed': False}]
    assert [list(e) for e in shaped] == [['name', 'changed']] * 2
    assert 'disks' in ENTRIES[0], 'the input is not changed'


def test_summary_keeps_only_the_named_keys_of_a_nested_dict():
    entries = [{'name': 'web01', 'live': {'status': 'applied_live', 'disks': [{'target': 'vda'}]}}, {'name': 'db01'}]
    shaped = shape_entries(entries, 'summary', ('name', ('live', ('status', 'method'))))
    assert shaped == [{'name': 'web01', 'live': {'status': 'applied_live'}}, {'name': 'db01'}]
