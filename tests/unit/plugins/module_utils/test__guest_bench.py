# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guest benchmark's decisions: candidates from the policy code, validity, order, figures."""

from __future__ import annotations

from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import DiskInfo, DiskSettings, decide_disk
from ansible_collections.kvmio.tuning.plugins.module_utils._guest_bench import (
    BASELINE, Candidate, baseline, check_candidate, collection_candidates, compare, dedupe, domain_candidate,
    matrix_candidates, preset_candidates, run_order, summarise, user_candidate, verdict)
from ansible_collections.kvmio.tuning.plugins.module_utils._storage_probe import StorageFacts
from ansible_collections.kvmio.tuning.plugins.module_utils._support import HostSupport

MODERN = HostSupport(qemu=(7, 2, 0), libvirt=(9, 0, 0), kernel=(6, 1, 0), io_uring_enabled=True,
                     qemu_has_io_uring=True)
NO_URING = HostSupport(qemu=(7, 2, 0), libvirt=(9, 0, 0), kernel=(6, 1, 0), io_uring_enabled=False,
                       qemu_has_io_uring=True)
EXT4 = StorageFacts(path='/srv/p', kind='file', fstype='ext4', odirect=True, shared=False)
RAMFS = StorageFacts(path='/srv/p', kind='file', fstype='ramfs', odirect=False, shared=False,
                     detail='open with O_DIRECT refused (EINVAL)')
BUSES = ('virtio', 'scsi', 'sata', 'ide')


def test_baseline_is_a_disk_as_virt_install_makes_it():
    base = baseline()
    assert base.name == BASELINE and (base.bus, base.cache, base.io, base.iothread, base.preallocation,
                                      base.image_format) == ('virtio', None, None, False, 'off', 'qcow2')
    assert base.effective_cache == 'writeback' and base.effective_io == 'threads'
    assert base.guest_write_cache == 'write back'
    assert Candidate('x', 'user', cache='directsync').guest_write_cache == 'write through'
    assert Candidate('x', 'user', cache='none').guest_write_cache == 'write back'


def test_collection_candidates_are_what_decide_disk_plans_for_this_storage():
    for storage, host in ((EXT4, MODERN), (RAMFS, MODERN), (RAMFS, NO_URING)):
        (plan, with_iothread), _warnings = collection_candidates(storage, host, '/srv/p/probe')
        decision = decide_disk(DiskInfo(target='vda', bus='virtio', path='/srv/p/probe', image_format='qcow2'),
                               DiskSettings(), storage, host)
        assert (plan.cache, plan.io) == (decision.final['cache'], decision.final['io'])
        assert plan.preallocation == 'metadata' and not plan.iothread and with_iothread.iothread
        assert with_iothread.key[1:3] == plan.key[1:3]
    plans, _warnings = collection_candidates(EXT4, MODERN, '/srv/p/probe')
    assert (plans[0].cache, plans[0].io) == ('none', 'native') and 'O_DIRECT works on ext4' in plans[0].note
    plans, _warnings = collection_candidates(RAMFS, NO_URING, '/srv/p/probe')
    assert (plans[0].cache, plans[0].io) == ('writeback', 'threads')
    plans, warnings = collection_candidates(None, MODERN, '/srv/p/probe')
    assert plans[0].cache == 'writeback' and warnings


def test_invalid_configurations_are_skipped_with_the_policy_reason():
    def why(storage=EXT4, host=MODERN, buses=BUSES, **kw):
        return check_candidate(Candidate('c', 'user', **kw), storage, host, buses, '/srv/p/probe')

    assert why(cache='none', io='native') == ''
    assert 'refuses' in why(storage=RAMFS, cache='none') and 'ramfs' in why(storage=RAMFS, cache='directsync')
    assert 'io=native needs cache=none or directsync' in why(cache='writeback', io='native')
    assert 'io=native needs' in why(io='native')                 # no cache attribute: writeback, no O_DIRECT
    assert 'io_uring' in why(host=NO_URING, io='io_uring')
    assert 'no sata driver' in why(buses=('virtio', 'scsi'), bus='sata')
    assert 'virtio-blk and virtio-scsi only' in why(bus='ide', iothread=True)
    assert why(bus='scsi', iothread=True, cache='writethrough') == ''
    assert 'qcow2 option' in why(image_format='raw', preallocation='metadata')
    assert why(storage=RAMFS) == '' and why(storage=RAMFS, cache='writeback', io='io_uring') == ''


def test_presets_and_matrix():
    plan = collection_candidates(EXT4, MODERN, '/srv/p/probe')[0][0]
    assert preset_candidates('none', plan) == []
    quick = preset_candidates('quick', plan)
    assert [c.name for c in quick] == ['writethrough', 'sata', 'metadata']
    assert quick[0].cache == 'writethrough' and quick[1].bus == 'sata' and quick[2].preallocation == 'metadata'
    standard = preset_candidates('standard', plan)
    assert [c.name for c in standard][3:] == ['metadata+iothread', 'scsi', 'scsi+iothread', 'directsync+iothread']
    scsi = standard[4]
    assert (scsi.bus, scsi.cache, scsi.io, scsi.preallocation) == ('scsi', plan.cache, plan.io, plan.preallocation)
    matrix = matrix_candidates(['default', 'none', 'writeback'], ['native', 'threads'], ['virtio'], [False, True],
                               ['off'])
    assert len(matrix) == 12
    runnable = [c for c in matrix if not check_candidate(c, EXT4, MODERN, BUSES, '/p')]
    assert len(runnable) == 8          # native only with none: default/native and writeback/native go
    assert all(c.cache == 'none' for c in runnable if c.io == 'native')


def test_dedupe_keeps_the_first_name_and_user_candidates_map_default_to_no_attribute():
    (plan, with_iothread), _warnings = collection_candidates(EXT4, MODERN, '/p')
    same_as_plan = user_candidate(0, {'cache': 'none', 'io': 'native', 'preallocation': 'metadata', 'bus': 'virtio',
                                      'iothread': False, 'format': 'qcow2'})
    assert same_as_plan.name == 'candidate1'
    mine = user_candidate(1, {'name': 'mine', 'cache': 'default', 'io': 'default'})
    assert mine.cache is None and mine.io is None and mine.key == baseline().key
    unique, notes = dedupe([baseline(), plan, with_iothread, same_as_plan, mine])
    assert [c.name for c in unique] == [BASELINE, 'collection', 'collection+iothread']
    assert notes == ['candidate1: same configuration as collection, measured once',
                     'mine: same configuration as virt-install, measured once']


def test_domain_candidate_copies_the_disk_settings():
    info = DiskInfo(target='sdb', bus='scsi', path='/var/lib/libvirt/images/db.qcow2', image_format='raw',
                    iothread='1', current={'cache': 'writethrough', 'io': 'threads'})
    cand = domain_candidate(info)
    assert (cand.name, cand.bus, cand.cache, cand.io, cand.iothread, cand.image_format) == (
        'domain:sdb', 'scsi', 'writethrough', 'threads', True, 'raw')
    odd = domain_candidate(DiskInfo(target='xvda', bus='xen', path='/x', image_format='vmdk'))
    assert odd.bus == 'virtio' and odd.image_format == 'qcow2' and "bus 'xen' measured as virtio" in odd.note


def test_runs_are_interleaved():
    a, b, c = (Candidate(n, 'user') for n in 'abc')
    assert [(rep, cand.name) for rep, cand in run_order([a, b, c], 2)] == [
        (0, 'a'), (0, 'b'), (0, 'c'), (1, 'a'), (1, 'b'), (1, 'c')]


def _runs(values):
    """values: {candidate: {workload: [value per repetition]}} -> runs as the runner records them."""
    runs = []
    for name, workloads in values.items():
        for rep in range(max(len(v) for v in workloads.values())):
            figures = {}
            for workload, series in workloads.items():
                metric = 'mb_per_s' if workload == 'seqwrite' else 'iops'
                figures[workload] = ({metric: series[rep], 'p99_us': 100.0 * (rep + 1)} if series[rep] is not None
                                     else 'not run: no boot')
            runs.append({'candidate': name, 'figures': figures})
    return runs


def test_medians_ratios_fastest_and_verdict():
    cands = [baseline(), Candidate('collection', 'collection'), Candidate('collection+iothread', 'collection'),
             Candidate('fast', 'alternative')]
    runs = _runs({
        BASELINE: {'randwrite': [100, 110, 90], 'seqwrite': [500, 500, 500]},
        'collection': {'randwrite': [60, 58, 62], 'seqwrite': [510, 490, 500]},
        'collection+iothread': {'randwrite': [104, 98, 101], 'seqwrite': [480, 470, None]},
        'fast': {'randwrite': [130, 120, 125], 'seqwrite': [400, 410, 405]},
    })
    table = summarise(cands, runs, ['randwrite', 'seqwrite'])
    base = table[BASELINE]['randwrite']
    assert (base['median'], base['min'], base['max'], base['runs'], base['spread']) == (100, 90, 110, 3, 0.2)
    assert base['p99_us'] == 200.0 and table['collection+iothread']['seqwrite']['runs'] == 2
    assert table['collection+iothread']['seqwrite']['median'] == 475.0
    fastest, best = compare(cands, table, ['randwrite', 'seqwrite'])
    assert table['collection']['randwrite']['ratio'] == 0.6
    assert fastest['randwrite'] == {'name': 'fast', 'metric': 'iops', 'median': 125, 'ratio': 1.25}
    assert fastest['seqwrite']['name'] in (BASELINE, 'collection') and fastest['seqwrite']['median'] == 500
    # Geometric mean of the ratios to the fastest: fast sqrt(1.0 * 0.81) = 0.9 beats baseline sqrt(0.8 * 1.0).
    assert best['name'] == 'fast' and best['score'] == 0.9 and best['ratio'] == {'randwrite': 1.25, 'seqwrite': 0.81}
    judged = verdict(table, fastest, ['collection', 'collection+iothread', 'absent'], ['randwrite', 'seqwrite'])
    assert set(judged) == {'collection', 'collection+iothread'}
    assert judged['collection']['randwrite'] == {'ratio_to_baseline': 0.6, 'ratio_to_fastest': 0.48, 'noise': 0.2,
                                                 'slower_than_baseline': True,
                                                 'within_10_percent_of_fastest': False}
    # Within the baseline's own spread (20%) is noise, not a loss.
    assert judged['collection+iothread']['randwrite']['slower_than_baseline'] is False
    assert judged['collection+iothread']['seqwrite']['within_10_percent_of_fastest'] is True
