# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Table tests of kvm_disk_tune's override resolution and literal-rule check (no ansible, no libvirt)."""

from __future__ import annotations

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._disk_plan import DiskRule
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import DiskSettings, Guards
from ansible_collections.kvmio.tuning.plugins.module_utils._domain_plan import DomainPlan
from ansible_collections.kvmio.tuning.plugins.module_utils._errors import PlanError
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_tune_runner import POLICY_SPEC
from ansible_collections.kvmio.tuning.plugins.module_utils._module import validated_overrides
from ansible_collections.kvmio.tuning.plugins.module_utils._overrides import check_literal_rules, policy_for, \
    scsi_queues

# kvm_disk_tune's option defaults.
OPTIONS = {'cache': 'auto', 'io': 'auto', 'discard': None, 'detect_zeroes': None, 'bus': 'keep', 'scsi_queues': None,
           'convert_boot_disk': False, 'allow_unsafe': False, 'migratable': False, 'disks': []}


def options(**kw):
    return dict(OPTIONS, **kw)


def rule(match, **overrides):
    return dict({'match': match}, **overrides)


# (what it shows, domain, module options, overrides, the policy's fields to compare, skip)
POLICY_TABLE = [
    ('module options alone', 'web01', options(cache='none', discard='unmap'), {},
     {'settings': DiskSettings(cache='none', io='auto', discard='unmap')}, False),
    ('an override by name applies to that domain', 'web01', options(), {'web01': {'cache': 'writeback'}},
     {'settings': DiskSettings(cache='writeback', io='auto')}, False),
    ('...and to no other', 'db01', options(), {'web01': {'cache': 'writeback'}},
     {'settings': DiskSettings()}, False),
    ('a glob override applies to every match', 'web02', options(), {'web*': {'bus': 'scsi'}},
     {'bus': 'scsi', 'settings': DiskSettings()}, False),
    ('overrides apply in order: the later one wins a setting', 'web01', options(),
     {'web*': {'cache': 'writeback', 'io': 'threads'}, 'web01': {'cache': 'none'}},
     {'settings': DiskSettings(cache='none', io='threads')}, False),
    ('keep in an override leaves the disk as it is', 'web01', options(discard='unmap'),
     {'web01': {'cache': 'keep', 'discard': 'keep'}},
     {'settings': DiskSettings(cache=None, io='auto', discard=None)}, False),
    ('disks rules add up: module options first, then each override', 'web01',
     options(disks=[rule('vdb', cache='none')]), {'web*': {'disks': [rule('vdc', skip=True)]}},
     {'disk_rules': (DiskRule('vdb', {'cache': 'none'}), DiskRule('vdc', {'skip': True}))}, False),
    ('skip from any matching override skips the domain', 'web01', options(),
     {'web*': {'skip': True}, 'web01': {'cache': 'none'}}, {}, True),
    ('scsi_queues auto is kept for the planner (the vCPU count)', 'web01', options(bus='scsi', scsi_queues='auto'), {},
     {'scsi_queues': 'auto', 'bus': 'scsi'}, False),
    ('scsi_queues from an override, as a number', 'web01', options(), {'web01': {'scsi_queues': '4'}},
     {'scsi_queues': 4}, False),
    ('migratable and convert_boot_disk per domain; allow_unsafe only module-wide', 'web01',
     options(allow_unsafe=True), {'web01': {'migratable': True, 'convert_boot_disk': True}},
     {'guards': Guards(allow_unsafe=True, migratable=True), 'convert_boot_disk': True}, False),
    ('a literal override with glob characters does not apply to an unrelated name', 'adv2', options(),
     {'adv[1]': {'cache': 'none'}}, {'settings': DiskSettings()}, False),
]


@pytest.mark.parametrize('shows, name, params, overrides, want, skip', POLICY_TABLE, ids=[r[0] for r in POLICY_TABLE])
def test_policy_for(shows, name, params, overrides, want, skip):
    policy, skipped = policy_for(name, params, overrides)
    assert {key: getattr(policy, key) for key in want} == want, shows
    assert skipped is skip


def test_an_override_keyed_by_a_real_name_with_glob_characters_applies_to_that_domain():
    policy, _skip = policy_for('adv[1]', options(), {'adv[1]': {'cache': 'none'}})
    assert policy.settings.cache == 'none'


@pytest.mark.parametrize('value, want', [(None, None), ('auto', 'auto'), ('1', 1), ('16', 16), (8, 8),
                                         ('1022', 1022)])
def test_scsi_queues_accepted(value, want):
    assert scsi_queues(value) == want


@pytest.mark.parametrize('value', ['0', '-2', 'four', '2.5', '', '1023', '4294967296'])
def test_scsi_queues_refused_naming_the_domain(value):
    # 1023: QEMU 7.2 refuses it at start; 2**32: libvirt refuses it at define time.
    with pytest.raises(PlanError) as err:
        policy_for('web01', options(scsi_queues=value), {})
    assert err.value.msg == ("web01: scsi_queues must be a number from 1 to 1022 (QEMU's limit for virtio-scsi) or "
                             "'auto', not '%s'; nothing was changed" % value)


@pytest.mark.parametrize('raw, want', [
    ({}, {}),
    (None, {}),
    ({'web01': None}, {'web01': {}}),
    ({'web01': {'cache': 'none', 'io': None}}, {'web01': {'cache': 'none'}}),
    ({'db*': {'skip': True}, 'web01': {'bus': 'scsi'}}, {'db*': {'skip': True}, 'web01': {'bus': 'scsi'}}),
])
def test_validated_overrides(raw, want):
    assert validated_overrides(raw, POLICY_SPEC) == want


@pytest.mark.parametrize('raw, message', [
    ({'web01': 'none'}, "overrides['web01'] must be a dictionary of settings, not str"),
    ({'web01': ['cache=none']}, "overrides['web01'] must be a dictionary of settings, not list"),
    ({'web01': {'cache': 'none'}, 'db01': {'skp': True}}, "overrides['db01']: unknown setting skp (an override takes "
                                                          "bus, cache, convert_boot_disk, detect_zeroes, discard, disks, "
                                                          "io, migratable, scsi_queues, skip)"),
])
def test_invalid_overrides_fail_naming_the_key(raw, message):
    with pytest.raises(PlanError) as err:
        validated_overrides(raw, POLICY_SPEC)
    assert err.value.msg == message


def plan(name, *matched):
    result = DomainPlan(name=name, before='', after='')
    result.matched_rules.update(matched)
    return result


# (what it shows, plans with the rules they matched, module disks, overrides, unknown disks or [])
LITERAL_TABLE = [
    ('a literal rule that matched a disk', [plan('web01', 'vdb')], [rule('vdb')], {}, []),
    ('a literal rule that matched nothing is a typo', [plan('web01')], [rule('vdz')], {}, ['vdz']),
    ('a glob may match nothing', [plan('web01')], [rule('vd[x-z]'), rule('/img/*.raw')], {}, []),
    ('a source path is a literal too', [plan('web01', '/img/a.qcow2')], [rule('/img/a.qcow2'), rule('/img/b.qcow2')],
     {}, ['/img/b.qcow2']),
    ("an override's rule must match in a domain of that override", [plan('web01', 'vdb'), plan('db01')], [],
     {'db01': {'disks': [rule('vdb')]}}, ["vdb (overrides['db01'])"]),
    ("a glob override's rule may match in any of its domains", [plan('web01'), plan('web02', 'vdc')], [],
     {'web*': {'disks': [rule('vdc')]}}, []),
    ('every typo is named at once', [plan('web01')], [rule('vdy')], {'web01': {'disks': [rule('vdz')]}},
     ['vdy', "vdz (overrides['web01'])"]),
]


@pytest.mark.parametrize('shows, plans, disks, overrides, unknown', LITERAL_TABLE, ids=[r[0] for r in LITERAL_TABLE])
def test_check_literal_rules(shows, plans, disks, overrides, unknown):
    if not unknown:
        check_literal_rules(plans, options(disks=disks), overrides)
        return
    with pytest.raises(PlanError) as err:
        check_literal_rules(plans, options(disks=disks), overrides)
    assert err.value.details['unknown_disks'] == unknown, shows
    assert err.value.msg == 'disks: no disk has the target or source %s; nothing was changed' % ', '.join(unknown)


def test_entries_are_validated_with_the_module_spec():
    # The one ansible-dependent part, shared by every module's overrides: a bad choice is refused, and
    # disks entries get their defaults.
    with pytest.raises(PlanError, match=r"overrides\['web01'\]: .*cache.*fast"):
        validated_overrides({'web01': {'cache': 'fast'}}, POLICY_SPEC)
    assert validated_overrides({'web01': {'cache': 'none', 'disks': [{'match': 'vdb', 'bus': 'scsi'}]}},
                               POLICY_SPEC) == {'web01': {'cache': 'none', 'disks': [
                                   {'match': 'vdb', 'bus': 'scsi', 'skip': False, 'cache': None, 'io': None,
                                    'discard': None, 'detect_zeroes': None}]}}
