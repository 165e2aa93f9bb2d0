# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Names with glob characters: an exact name always wins over the glob it also is (issue 14, W5)."""

from __future__ import annotations

from ansible_collections.kvmio.tuning.plugins.module_utils._disk_plan import DiskRule, TunePolicy, plan_domain
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import DiskSettings
from ansible_collections.kvmio.tuning.plugins.module_utils._selection import matches, select_names
from helpers import domain_xml as dx

NAMES = ['adv1', 'adv2', 'adv[1]', 'web*', 'web01']


def test_exclude_of_a_real_name_with_brackets_leaves_out_that_name_only():
    assert select_names(NAMES, ['adv*'], ['adv[1]']) == ['adv1', 'adv2']
    assert select_names(NAMES, ['adv[1]']) == ['adv[1]']
    assert select_names(NAMES, ['web*']) == ['web*'], "a domain named 'web*' is named, not every web domain"


def test_a_glob_that_names_nothing_real_is_still_a_glob():
    assert select_names(NAMES, ['adv[12]']) == ['adv1', 'adv2']
    assert select_names(['adv1', 'adv2'], ['*'], ['adv[1]']) == ['adv2']


def test_matches_with_and_without_the_known_names():
    known = frozenset(NAMES)
    assert matches('adv[1]', 'adv[1]', known) and not matches('adv1', 'adv[1]', known)
    assert matches('adv1', 'adv[1]') and matches('adv1', 'adv[1]', frozenset(['adv1']))
    assert not matches('adv1', 'adv', known) and matches('adv1', 'adv1', known)


def test_disk_rule_on_a_path_with_brackets_picks_that_disk():
    xml = dx.domain('d', [dx.disk('/img/a1.qcow2', 'vda', 'virtio'), dx.disk('/img/a[1].qcow2', 'vdb', 'virtio')])
    rule = DiskRule(match='/img/a[1].qcow2', overrides={'cache': 'writeback'})
    plan = plan_domain(xml, TunePolicy(settings=DiskSettings(cache='none', io='keep'), disk_rules=(rule,)))
    assert [d['after']['cache'] for d in plan.disks] == ['none', 'writeback']
    glob = DiskRule(match='/img/a?.qcow2', overrides={'cache': 'writeback'})
    plan = plan_domain(xml, TunePolicy(settings=DiskSettings(cache='none', io='keep'), disk_rules=(glob,)))
    assert [d['after']['cache'] for d in plan.disks] == ['writeback', 'none']
