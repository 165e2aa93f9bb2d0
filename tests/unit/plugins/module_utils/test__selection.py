# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Table tests of domain selection (``domains``/``exclude``/``overrides``), glob characters in real names included."""

from __future__ import annotations

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._disk_plan import DiskRule, TunePolicy, plan_domain
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import DiskSettings
from ansible_collections.kvmio.tuning.plugins.module_utils._errors import DomainNotFound, PlanError
from ansible_collections.kvmio.tuning.plugins.module_utils._selection import is_glob, matches, select_names, \
    select_with_overrides, still_defined
from helpers import domain_xml as dx

# libvirt accepts any name but '/': brackets, stars and question marks are real names too.
FLEET = ['web01', 'web02', 'db01', 'adv1', 'adv[1]', 'what?', 'star*', 'web01-old']


@pytest.mark.parametrize('name, pattern, want', [
    ('web01', 'web01', True),
    ('web01', 'web0', False),            # a literal is the whole name, never a prefix
    ('web01', 'WEB01', False),           # case matters, as in libvirt
    ('web01', 'web*', True),
    ('web01-old', 'web0?', False),
    ('web01', 'web0[12]', True),
    ('web03', 'web0[!3]', False),
    ('adv1', 'adv[1]', True),            # a glob when it names nothing
    ('what!', 'what?', True),
    ('star*', 'star*', True),            # a star matches itself too
])
def test_matches(name, pattern, want):
    assert matches(name, pattern) is want


def test_a_pattern_that_is_exactly_a_name_matches_that_name():
    assert matches('adv[1]', 'adv[1]')


@pytest.mark.parametrize('pattern, want', [('web01', False), ('web*', True), ('what?', True), ('adv[1]', True),
                                           ('a]b', False), ('', False)])
def test_is_glob(pattern, want):
    assert is_glob(pattern) is want


# (what it shows, domains, exclude, the names selected)
SELECT_TABLE = [
    ('everything by default', ['*'], [], sorted(FLEET)),
    ('a literal name', ['db01'], [], ['db01']),
    ('globs and names together, each once, sorted', ['web*', 'web01', 'db01'], [],
     ['db01', 'web01', 'web01-old', 'web02']),
    ('exclude by glob', ['*'], ['web*', 'adv*'], ['db01', 'star*', 'what?']),
    ('exclude a literal that does not exist: nothing to leave out', ['web*'], ['web99'],
     ['web01', 'web01-old', 'web02']),
    ('a glob that matches nothing selects nothing', ['mail*'], [], []),
    ("a real name with a '?' selected by its name", ['what?'], [], ['what?']),
]


@pytest.mark.parametrize('shows, patterns, exclude, want', SELECT_TABLE, ids=[r[0] for r in SELECT_TABLE])
def test_select_names(shows, patterns, exclude, want):
    assert select_names(FLEET, patterns, exclude) == want, shows


@pytest.mark.parametrize('patterns, missing', [(['web99'], ['web99']), (['web01', 'mail', 'db02'], ['mail', 'db02'])])
def test_a_literal_name_that_does_not_exist_is_an_error(patterns, missing):
    with pytest.raises(DomainNotFound) as err:
        select_names(FLEET, patterns, where=' at qemu:///system')
    assert err.value.details == {'missing': missing}
    assert err.value.msg == 'domain %s not found at qemu:///system: %s' % (
        'is' if len(missing) == 1 else 'are', ', '.join("'%s'" % m for m in missing))


def test_excluding_a_real_name_with_brackets_leaves_out_that_domain_only():
    # The example: exclude 'adv[1]' must leave out adv[1], and tune adv1.
    assert select_names(['adv1', 'adv[1]'], ['*'], ['adv[1]']) == ['adv1']


@pytest.mark.parametrize('overrides', [{}, {'web01': {}}, {'web*': {}, 'mail*': {}}, {'db01': {'skip': True}}])
def test_overrides_of_selected_domains_or_globs_pass(overrides):
    params = {'domains': ['web*', 'db01'], 'exclude': []}
    assert select_with_overrides(FLEET, params, overrides) == ['db01', 'web01', 'web01-old', 'web02']


@pytest.mark.parametrize('overrides, named', [
    ({'web99': {}}, 'web99'),                       # a typo
    ({'adv1': {}}, 'adv1'),                         # exists, but not selected
    ({'web02': {}, 'db01': {}}, 'db01'),            # excluded
])
def test_an_override_for_a_domain_not_selected_is_refused(overrides, named):
    params = {'domains': ['web*', 'db01'], 'exclude': ['db*']}
    with pytest.raises(PlanError) as err:
        select_with_overrides(FLEET, params, overrides)
    assert err.value.msg == 'overrides name domains that are not selected or not defined: %s' % named


def test_still_defined_names_the_domains_that_went_away():
    assert still_defined(['a', 'b', 'c'], {'a': '<xml/>', 'c': '<xml/>'}) == (
        ['a', 'c'], 'domains undefined by another tool during this run, left alone: b')
    assert still_defined(['a'], {'a': '<xml/>'}) == (['a'], '')


# --- issue 14, W5: an exact name (or path) always wins over the glob it also is -----------------------

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
