# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_live_plan: which changes reach a running guest how, with its write cache left alone; on data
recorded from libvirt 9.0 and QEMU 7.2 (tools/record-live-data) and on small tables."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._blockdev import device_states, disk_chain, node_states
from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import parse_domain
from ansible_collections.kvmio.tuning.plugins.module_utils._errors import PlanError
from ansible_collections.kvmio.tuning.plugins.module_utils._live_plan import (
    RECORD_NAMESPACE, WHY_AIO, WHY_IOTHREAD, WHY_NATIVE, WHY_NO_FLUSH, WHY_NO_IOTHREAD, WHY_WRITE_CACHE, RunningDisk,
    broken_live_rules, choose_method, driver_settings, gains_from_restore, live_findings, live_iothreads, memory_bytes,
    merged_discards, observed, pair_disks, plan_reopen, plan_restore, record_is_current, record_xml, recorded_discards,
    refused_by_rule, restore_xml, running_from_live_xml, running_from_qemu, undone, verify)
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import Guards
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_xml import disk_info
from ansible_collections.kvmio.tuning.plugins.module_utils._support import HostSupport
from helpers.live_data import live_disks, load

PROCESS = 'kvmio-live-0123456789abcdef'


def running(cache=None, io=None, discard=None, detect_zeroes=None, iothread=None, guest=None, target='vda'):
    disk = running_from_live_xml(target, {'cache': cache, 'io': io, 'discard': discard,
                                          'detect_zeroes': detect_zeroes, 'iothread': iothread})
    return replace(disk, guest_write_cache=guest)


def settings(cache=None, io=None, discard=None, detect_zeroes=None, iothread=None):
    return {'cache': cache, 'io': io, 'discard': discard, 'detect_zeroes': detect_zeroes, 'iothread': iothread}


# --- what QEMU runs ---------------------------------------------------------------------------------

def test_qemu_state_of_the_recorded_domains():
    disks = live_disks('writeback')
    nodes, devices = node_states(load('writeback.named-nodes.json')), device_states(load('writeback.query-block.json'))
    vda = running_from_qemu(disk_chain(disks['vda']), driver_settings(disks['vda']), nodes, devices)
    # Started writeback; the firmware's virtio-blk driver cannot flush, so QEMU turned the device's write
    # cache off: QEMU writes through for that guest, and a restore must give it writethrough.
    assert vda.values() == {'cache': 'writethrough', 'io': 'threads', 'discard': 'ignore', 'detect_zeroes': 'off',
                            'iothread': None}
    assert (vda.read_from, vda.write_cache, vda.guest_write_cache) == ('qemu', True, False)
    assert vda.as_dict()['write_cache'] is True
    sda = running_from_qemu(disk_chain(disks['sda']), driver_settings(disks['sda']), nodes, devices)
    assert sda.cache == 'writethrough' and sda.guest_write_cache is False


def test_a_reopen_leaves_qemu_as_a_start_with_the_new_settings_would():
    """Domain A started writeback and was reopened with the options libvirt gave domain B, started with
    none: QEMU then runs for A what B's live XML says (the recorded reopen, read back)."""
    a_disks, b_disks = live_disks('writeback'), live_disks('none')
    nodes = node_states(load('reopened-none.named-nodes.json'))
    devices = device_states(load('reopened-none.query-block.json'))
    reopened = running_from_qemu(disk_chain(a_disks['vda']), driver_settings(a_disks['vda']), nodes, devices)
    started = running_from_live_xml('vda', driver_settings(b_disks['vda']))
    assert (reopened.direct, reopened.no_flush) == (started.direct, started.no_flush)
    # The cache mode as the guest has it: A's firmware turned its write cache off, so A runs directsync.
    assert dict(reopened.values(), cache='none') == started.values() and reopened.cache == 'directsync'
    assert reopened.values()['discard'] == 'unmap'      # visible: QEMU allows detect_zeroes=unmap only with it


def test_discard_hidden_by_qemu_comes_from_the_record_of_this_process_only():
    live = parse_domain("<domain id='7'><metadata><kvmio:live xmlns:kvmio='%s' id='7' process='%s'><kvmio:node "
                        "name='libvirt-2-format' discard='unmap'/></kvmio:live></metadata></domain>"
                        % (RECORD_NAMESPACE, PROCESS))
    assert recorded_discards(live, '7', PROCESS) == {'libvirt-2-format': 'unmap'}
    assert recorded_discards(live, '7', 'kvmio-live-other') == {}, 'a restore or migration undid it'
    assert recorded_discards(live, '8', PROCESS) == {}, 'another QEMU process of the domain'
    assert recorded_discards(live, '7', None) == {}, 'a process without a name has no record'
    assert record_is_current(live)
    # An admin's restore carries the record over to a new process, with a new domain id: stale, no QMP needed.
    restored = parse_domain(etree_text(live))
    restored.set('id', '9')
    assert not record_is_current(restored)
    disks = live_disks('writeback')
    nodes, devices = node_states(load('writeback.named-nodes.json')), device_states(load('writeback.query-block.json'))
    vda = running_from_qemu(disk_chain(disks['vda']), driver_settings(disks['vda']), nodes, devices, 'unmap')
    assert vda.discard == 'unmap'


def etree_text(root):
    from lxml import etree
    return etree.tostring(root, encoding='unicode')


def test_record_round_trip_and_merge():
    xml = record_xml(3, PROCESS, {'libvirt-2-format': 'unmap', 'libvirt-5-format': 'ignore'})
    root = parse_domain("<domain id='3'><metadata>%s</metadata></domain>"
                        % xml.replace('<live ', "<live xmlns='%s' " % RECORD_NAMESPACE, 1))
    assert recorded_discards(root, '3', PROCESS) == {'libvirt-2-format': 'unmap', 'libvirt-5-format': 'ignore'}
    merged = merged_discards(root, '3', PROCESS, {'libvirt-5-format': 'unmap'})
    assert merged == {'libvirt-2-format': 'unmap', 'libvirt-5-format': 'unmap'}
    assert merged_discards(root, '3', 'other', {'libvirt-5-format': 'unmap'}) == {'libvirt-5-format': 'unmap'}


# --- reopen ----------------------------------------------------------------------------------------

@pytest.mark.parametrize('now, want, guest, status, after, why', [
    # none <-> writeback: the guest's write cache stays on
    (settings('writeback', 'threads'), settings('none', 'threads'), True, 'applied_live', 'none', None),
    (settings('none', 'threads'), settings('writeback', 'threads'), True, 'applied_live', 'writeback', None),
    (settings(None), settings('none'), None, 'applied_live', 'none', None),
    # writethrough -> none: O_DIRECT now, the write cache at the next start
    (settings('writethrough'), settings('none'), False, 'partially_applied', 'directsync', WHY_WRITE_CACHE % 'directsync'),
    (settings('none'), settings('writethrough'), True, 'partially_applied', 'writeback', WHY_WRITE_CACHE % 'writeback'),
    # unsafe's no-flush is not given to a guest that runs without a write cache
    # (the guest turned its write cache off: QEMU writes through for it, and says so)
    (settings('writeback'), settings('unsafe'), False, 'restart_required', 'writethrough', WHY_NO_FLUSH),
    (settings('writeback'), settings('unsafe'), True, 'applied_live', 'unsafe', None),
    # native aio stays, and with it O_DIRECT
    (settings('none', 'native'), settings('writeback', 'io_uring'), True, 'restart_required', 'none', WHY_NATIVE),
])
def test_reopen_changes_the_cache_without_touching_the_write_cache(now, want, guest, status, after, why):
    outcome = plan_reopen('vda', want, replace(running_from_live_xml('vda', now), guest_write_cache=guest), now)
    assert outcome.status == status
    assert outcome.after['cache'] == after
    assert outcome.expected.write_cache == running_from_live_xml('vda', now).write_cache
    pending = {p['setting']: p['why'] for p in outcome.pending}
    assert pending.get('cache') == why


def test_reopen_sets_discard_and_detect_zeroes_and_leaves_io_and_iothread_pending():
    now = settings('none', 'native', 'ignore', None, None)
    want = settings('none', 'threads', 'unmap', 'unmap', '1')
    outcome = plan_reopen('vda', want, running('none', 'native', 'ignore', guest=True), now)
    assert outcome.status == 'partially_applied'
    assert [c.setting for c in outcome.changes] == ['discard', 'detect_zeroes']
    assert all(c.live for c in outcome.changes)
    assert {p['setting']: p['why'] for p in outcome.pending} == {'io': WHY_AIO, 'iothread': WHY_IOTHREAD}
    # The reopen passes QEMU's aio as it runs, and the new discard/detect_zeroes.
    assert outcome.driver == {'cache': 'none', 'io': 'native', 'discard': 'unmap', 'detect_zeroes': 'unmap'}


def test_reopen_options_of_an_unset_cache_stay_unset():
    outcome = plan_reopen('vda', settings(None, None, 'unmap'), running(), settings())
    assert outcome.driver['cache'] is None and outcome.changes[0].setting == 'discard'


def test_an_unset_discard_is_passed_as_ignore_since_an_omitted_one_would_stay():
    outcome = plan_reopen('vda', settings('none'), running('none', discard='unmap', guest=True),
                          settings('none', discard='unmap'))
    assert outcome.driver['discard'] == 'ignore' and [c.setting for c in outcome.changes] == ['discard']
    same = plan_reopen('vda', settings(None, None, 'unmap'), running(), settings())
    assert same.driver['discard'] == 'unmap'


def test_in_sync_and_refused_disks():
    same = plan_reopen('vda', settings('none', 'native'), running('none', 'native', guest=True), settings('none', 'native'))
    assert same.status == 'in_sync' and same.method is None and not same.changes
    refused = plan_reopen('vda', settings('none'), running('writeback'), settings('writeback'), 'it is encrypted')
    assert refused.status == 'restart_required' and refused.pending == [
        {'setting': 'cache', 'running': 'writeback', 'wanted': 'none', 'why': 'it is encrypted'}]


def test_a_failed_reopen_changes_nothing_and_says_why():
    outcome = plan_reopen('vda', settings('none'), running('writeback', guest=True), settings('writeback'))
    failed = undone(outcome, 'filesystem does not support O_DIRECT')
    assert failed.status == 'restart_required' and failed.changes == [] and failed.after == failed.before
    assert failed.pending[0]['why'] == 'filesystem does not support O_DIRECT' and failed.error


# --- restore --------------------------------------------------------------------------------------

def test_restore_applies_io_and_iothread_keeping_the_write_cache_the_guest_has():
    want = settings('none', 'native', 'unmap', 'unmap', '1')
    on = plan_restore('vda', want, running('writeback', 'threads', guest=True), {'1'})
    assert on.status == 'applied_live' and on.driver == want
    # A guest running without a write cache (writethrough, or firmware that cannot flush) keeps it off.
    off = plan_restore('vda', want, running('writeback', 'threads', guest=False), {'1'})
    assert off.status == 'partially_applied' and off.driver['cache'] == 'directsync'
    assert off.pending == [{'setting': 'cache', 'running': 'directsync', 'wanted': 'none',
                            'why': WHY_WRITE_CACHE % 'directsync'}]
    missing = plan_restore('vda', want, running('none', 'native', 'unmap', 'unmap', guest=True), set())
    assert missing.pending[0]['why'] == WHY_NO_IOTHREAD % '1' and missing.status == 'restart_required'


def test_the_method_is_chosen_per_domain():
    now = running('none', 'native', guest=True)
    want = settings('writeback', 'io_uring')
    reopens = [plan_reopen('vda', want, now, settings('none', 'native'))]
    restores = [plan_restore('vda', want, now, set())]
    assert gains_from_restore(reopens[0], restores[0])
    assert choose_method('web', reopens, restores, allow_pause=False).method is None
    plan = choose_method('web', reopens, restores, allow_pause=True)
    assert plan.method == 'restore' and plan.status == 'applied_live'
    tier1 = choose_method('web', [plan_reopen('vda', settings('none'), running('writeback', guest=True),
                                              settings('writeback'))], None, allow_pause=True)
    assert tier1.method == 'reopen' and tier1.status == 'applied_live'


def test_restore_xml_edits_only_the_drivers_and_drops_the_record():
    live = load('writeback.live.xml').replace(
        '<resource>', "<metadata><kvmio:live xmlns:kvmio='%s' process='1:2'/></metadata><resource>" % RECORD_NAMESPACE)
    outcome = plan_restore('vda', settings('writeback', 'io_uring', 'unmap', 'unmap'),
                           running('writeback', 'threads', 'ignore', guest=False), set())
    text, kept = restore_xml(live, [outcome], {'vda': False, 'sda': False})
    assert kept == []
    root = parse_domain(text)
    assert root.find('metadata') is None
    drivers = {d.find('target').get('dev'): dict(d.find('driver').attrib) for d in root.findall('devices/disk')}
    assert drivers['vda'] == {'name': 'qemu', 'type': 'qcow2', 'cache': 'writethrough', 'io': 'io_uring',
                              'discard': 'unmap', 'detect_zeroes': 'unmap'}
    assert drivers['sda'] == {'name': 'qemu', 'type': 'raw', 'cache': 'writethrough'}


def test_restore_xml_never_turns_a_guests_write_cache_on():
    outcome = plan_restore('vda', settings('none'), running('writethrough', guest=False), set())
    outcome.driver['cache'] = 'none'        # a plan that would do it is refused before anything is defined
    with pytest.raises(PlanError, match='would change the write cache its guest runs with'):
        restore_xml(load('writeback.live.xml'), [outcome], {'vda': False, 'sda': False})


def test_restore_xml_keeps_the_write_cache_of_every_disk_the_plan_leaves_alone():
    # sda (writethrough in the XML) runs with the write cache its guest turned on; vda (writeback)
    # with the one its guest turned off: each gets the mode with the same O_DIRECT and no-flush and
    # the write cache it runs with, whether the plan touches it or not.
    text, kept = restore_xml(load('writeback.live.xml'), [], {'vda': False, 'sda': True})
    drivers = {d.find('target').get('dev'): d.find('driver').get('cache') for d in parse_domain(text).findall('devices/disk')}
    assert drivers == {'vda': 'writethrough', 'sda': 'writeback'}
    assert kept == [{'target': 'vda', 'cache': 'writethrough', 'was': 'writeback'},
                    {'target': 'sda', 'cache': 'writeback', 'was': 'writethrough'}]
    none = load('writeback.live.xml').replace("cache='writeback' io='threads'", "cache='none' io='threads'")
    text, kept = restore_xml(none, [], {'vda': False, 'sda': False})
    assert kept[0] == {'target': 'vda', 'cache': 'directsync', 'was': 'none'}
    # No mode keeps unsafe's no-flush without a write cache, and an unknown write cache is no guess.
    unsafe = load('writeback.live.xml').replace("cache='writeback' io='threads'", "cache='unsafe' io='threads'")
    with pytest.raises(PlanError, match='disk vda runs cache=unsafe and its guest has turned its write cache off'):
        restore_xml(unsafe, [], {'vda': False, 'sda': False})
    with pytest.raises(PlanError, match='disk sda: QEMU does not report the write cache its guest runs with'):
        restore_xml(load('writeback.live.xml'), [], {'vda': True})
    # A read-only disk has no writes to lose: it is never a reason to refuse.
    readonly = load('writeback.live.xml').replace("<target dev='sda'", "<readonly/><target dev='sda'")
    assert restore_xml(readonly, [], {'vda': True})[1] == []


# --- pairing, checks, audit ------------------------------------------------------------------------

def test_pairing_needs_the_same_target_bus_and_source():
    live = parse_domain(load('writeback.live.xml'))
    config = parse_domain(load('writeback.live.xml').replace("bus='sata'", "bus='scsi'").replace(
        "<source file='/var/lib/libvirt/images/top.qcow2'", "<source file='/var/lib/libvirt/images/top2.qcow2'"))
    pairs = {p.target: p for p in pair_disks(config, live)}
    assert 'runs another source' in pairs['vda'].why_unpaired and pairs['vda'].live is None
    assert pairs['sda'].why_unpaired == 'runs on bus sata, configured on scsi: applies at the next boot'
    same = {p.target: p for p in pair_disks(live, live)}
    assert same['vda'].live is not None and same['vda'].wanted['cache'] == 'writeback'


def test_only_the_settings_the_run_tuned_change_the_rest_stays_as_qemu_runs_it():
    # The persistent configuration says unsafe and detect_zeroes=on (an admin's pending edit); this run
    # tuned discard only: the reopen keeps QEMU's cache and detect_zeroes.
    want = settings('unsafe', 'threads', 'unmap', 'on')
    outcome = plan_reopen('vda', want, running('writeback', 'threads', guest=True), settings('writeback', 'threads'),
                          tuned={'discard'})
    assert [c.setting for c in outcome.changes] == ['discard'] and outcome.status == 'applied_live'
    assert outcome.driver == {'cache': 'writeback', 'io': 'threads', 'discard': 'unmap', 'detect_zeroes': None}
    assert outcome.wanted['cache'] == 'writeback' and outcome.pending == []
    # Nothing tuned: nothing changes, nothing is pending.
    assert plan_reopen('vda', want, running('writeback', guest=True), settings('writeback'), tuned=()).status == 'in_sync'
    # A restore keeps what QEMU runs for the settings not tuned, even where the live XML says otherwise.
    reopened = replace(running('writeback', 'threads', guest=True), direct=True, read_from='qemu')
    restore = plan_restore('vda', settings('writeback', 'native'), reopened, set(), settings('writeback', 'threads'),
                           tuned={'io'})
    assert restore.driver['cache'] == 'none' and restore.driver['io'] == 'native'
    assert [c.setting for c in restore.changes] == ['io'] and restore.status == 'applied_live'


def test_a_rule_the_running_disk_would_break_refuses_the_change():
    # The live disk is shareable (the persistent one no longer is): writeback there is refused live.
    live = parse_domain(load('writeback.live.xml').replace("cache='writeback' io='threads'", "cache='none' io='threads'")
                        .replace("<target dev='vda'", "<shareable/><target dev='vda'"))
    disk = [d for d in live.findall('devices/disk') if d.find('target').get('dev') == 'vda'][0]
    info = disk_info(disk, None, live.find('devices'))
    now = running('none', 'threads', guest=True)
    outcome = plan_reopen('vda', settings('writeback', 'threads'), now, settings('none', 'threads'))
    broken = broken_live_rules(info, outcome, None, HostSupport(), Guards())
    assert broken == ['a shareable disk must use cache=none or directsync, not writeback (each host caches its own '
                      'view); use cache=none or directsync']
    kept = plan_reopen('vda', settings('writeback', 'threads'), now, settings('none', 'threads'), tuned=())
    refused = refused_by_rule(outcome, kept, broken[0])
    assert refused.method is None and refused.changes == [] and refused.status == 'restart_required'
    assert refused.pending[0]['why'] == broken[0]
    # unsafe needs allow_unsafe on the running disk as in the configuration.
    unsafe = plan_reopen('vda', settings('unsafe'), running('writeback', guest=True), settings('writeback'))
    plain = disk_info(disk.getparent()[0], None, live.find('devices'))
    assert 'cache=unsafe ignores flushes' in broken_live_rules(plain, unsafe, None, HostSupport(), Guards())[0]
    assert broken_live_rules(plain, unsafe, None, HostSupport(), Guards(allow_unsafe=True)) == []


def test_a_restore_that_cannot_keep_a_disk_as_it_runs_is_not_chosen():
    unsafe_off = running('unsafe', 'threads', guest=False)
    restores = [plan_restore('vda', settings('unsafe', 'native'), unsafe_off, set(), settings('unsafe', 'threads'),
                             tuned={'io'})]
    assert restores[0].blocks_restore
    reopens = [plan_reopen('vda', settings('unsafe', 'native'), unsafe_off, settings('unsafe', 'threads'), tuned={'io'})]
    plan = choose_method('web', reopens, restores, allow_pause=True)
    assert plan.method is None and 'no save/restore' in plan.no_pause


def test_a_failed_verification_reports_what_qemu_runs():
    outcome = plan_reopen('vda', settings('none', None, 'unmap', 'unmap'), running('writeback', guest=True),
                          settings('writeback'))
    assert outcome.status == 'applied_live'
    # QEMU took the discard and detect_zeroes but not O_DIRECT.
    now = replace(outcome.expected, direct=False)
    found = observed(outcome, now, verify(outcome, now), 'QEMU reports after the reopen')
    assert found.status == 'partially_applied'
    assert sorted(c.setting for c in found.changes) == ['detect_zeroes', 'discard']
    assert found.pending == [{'setting': 'cache', 'running': 'writeback', 'wanted': 'none',
                              'why': 'QEMU reports after the reopen: direct is False, expected True'}]
    unchanged = replace(outcome.expected, direct=False, discard='ignore', detect_zeroes='off')
    nothing = observed(outcome, unchanged, ['all wrong'], 'QEMU reports')
    assert nothing.status == 'restart_required' and nothing.method is None and nothing.changes == []


def test_verify_reports_what_qemu_runs_otherwise():
    outcome = plan_reopen('vda', settings('none', None, 'unmap', 'unmap'), running('writeback', guest=True),
                          settings('writeback'))
    assert verify(outcome, outcome.expected) == []
    wrong = replace(outcome.expected, direct=False, detect_zeroes='off')
    assert verify(outcome, wrong) == ['direct is False, expected True', 'detect_zeroes is off, expected unmap']
    turned = replace(outcome.expected, guest_write_cache=False)
    assert verify(outcome, turned) == ["the guest's write cache is off, expected on"]


def test_memory_and_iothreads_of_the_live_xml():
    assert memory_bytes(parse_domain(load('writeback.live.xml'))) == 64 << 20
    assert memory_bytes(parse_domain("<domain><memory unit='GiB'>2</memory></domain>")) == 2 << 30
    assert live_iothreads(parse_domain("<domain><iothreads>2</iothreads></domain>")) == {'1', '2'}
    assert live_iothreads(parse_domain("<domain><iothreads>2</iothreads><iothreadids><iothread id='5'/>"
                                       "<iothread id='7'/></iothreadids></domain>")) == {'5', '7'}


def test_findings_for_a_stale_live_xml_and_a_pending_restart():
    reopened = replace(running('writeback', guest=True), direct=True, read_from='qemu')
    found = {f['code']: f for f in live_findings('web', 'vda', settings('writeback'), reopened, settings('none', None,
                                                                                                         'unmap'))}
    assert 'QEMU runs cache=none, which the live XML does not say' in found['stale_live_xml']['message']
    assert found['restart_pending']['message'] == 'QEMU runs discard=ignore; the configuration says discard=unmap'
    assert live_findings('web', 'vda', settings('none'), running('none', guest=True), settings('none')) == []
    assert isinstance(reopened, RunningDisk)
