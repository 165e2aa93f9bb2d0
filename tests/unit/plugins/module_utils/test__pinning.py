# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The CPU allocator on real host capabilities (libvirt's and virt-manager's) and larger hosts built from them."""

from __future__ import annotations

import os

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._cpuset import format_cpuset, parse_cpuset
from ansible_collections.kvmio.tuning.plugins.module_utils._errors import PlanError
from ansible_collections.kvmio.tuning.plugins.module_utils._pinning import DomainNeed, PinPolicy, allocate
from ansible_collections.kvmio.tuning.plugins.module_utils._topology import topology_from_capabilities
from helpers.corpus import CORPUS
from helpers.topology import synthetic_host

CAPS = os.path.join(CORPUS, 'capabilities')


def caps(name):
    path = os.path.join(CAPS, name)
    if not os.path.exists(path):
        pytest.skip('no capabilities corpus at %s' % CAPS)
    with open(path, encoding='utf-8') as handle:
        return topology_from_capabilities(handle.read())


def used_by(placement):
    return {c for cpus in placement.vcpus.values() for c in cpus}


def assert_sound(topology, placements, policy):
    vcpu_cpus = []
    for placement in placements.values():
        cpus = used_by(placement)
        vcpu_cpus.extend(cpus)
        nodes = {topology.node_of(c) for c in cpus | placement.emulator}
        assert nodes == {placement.node}, 'locality: vCPUs and emulator on the domain node'
        assert not cpus & placement.emulator, 'emulator/iothreads off the vCPU CPUs'
        assert all(c in topology.online for c in cpus | placement.emulator)
        assert not (cpus | placement.emulator) & policy.reserved, 'reserved CPUs never used'
        for cpu in cpus:      # a core never serves two domains
            for other in placements.values():
                if other is not placement:
                    assert not topology.siblings[cpu] & used_by(other)
    if policy.mode == 'dedicated':
        assert len(vcpu_cpus) == len(set(vcpu_cpus)), 'no two vCPUs share a CPU'


def test_cpuset_round_trip_and_errors():
    assert parse_cpuset('0-3,^2,8') == {0, 1, 3, 8}
    assert format_cpuset({0, 1, 3, 8, 9, 10}) == '0-1,3,8-10'
    for bad, message in (('0-', "'0-' is not a CPU number or range"), ('3-1', 'range 3-1 goes backwards'),
                         ('', 'is not a cpuset'), ('1,^1', 'selects no CPU'),
                         ('0-99999999', 'CPU 99999999 is beyond 16383, the highest libvirt accepts'),
                         ('16384', 'CPU 16384 is beyond 16383')):
        with pytest.raises(PlanError) as err:
            parse_cpuset(bad, 'vcpu_pinning')
        assert message in err.value.msg and 'vcpu_pinning' in err.value.msg


def test_topology_from_virt_manager_aarch64_160_cpus():
    topology = caps('virt-manager-kvm-aarch64.xml')
    assert len(topology.cpus) == 160 and len(topology.cells) == 2
    with pytest.raises(PlanError) as err:
        topology.check_cpus({3, 400}, 'web01 vcpu_pinning')
    assert err.value.msg == 'web01 vcpu_pinning uses CPU 400, which this host does not have (it has 0-159)'


@pytest.mark.parametrize('name', ['virt-manager-kvm-aarch64.xml', 'virt-manager-kvm-ppc64le.xml',
                                  'vircaps-x86_64-basic.xml', 'caps-test3.xml', 'vircaps-x86_64-hmat.xml',
                                  'virt-manager-dac-caps-template.xml'])
@pytest.mark.parametrize('smt', ['share', 'avoid'])
def test_fill_real_hosts_without_overlap(name, smt):
    topology = caps(name)
    policy = PinPolicy(smt=smt, reserved=frozenset(sorted(topology.cpus)[:1]))
    needs = [DomainNeed('vm%03d' % i, vcpus=(i % 4) + 1, iothreads=1) for i in range(200)]
    placements, unplaced = allocate(topology, needs, policy)
    assert placements and unplaced, 'the host fills up and the rest is reported'
    assert_sound(topology, placements, policy)
    assert all('do not fit' in why for why in unplaced.values())


def test_adding_a_domain_never_moves_the_others():
    topology = synthetic_host(nodes=8, cores_per_node=16)          # 256 CPUs, 8 nodes, SMT 2
    policy = PinPolicy(reserved=frozenset({0, 128}))
    needs = [DomainNeed('vm%03d' % i, vcpus=(i % 6) + 1, iothreads=2) for i in range(50)]
    first, unplaced = allocate(topology, needs, policy)
    assert not unplaced
    assert_sound(topology, first, policy)
    again = [DomainNeed(n.name, n.vcpus, n.iothreads, current_vcpu_pins=first[n.name].vcpus) for n in needs]
    again.insert(0, DomainNeed('aaa-new', vcpus=4))            # sorts first: would take the first cores
    second, unplaced = allocate(topology, again, policy)
    assert not unplaced
    for need in needs:
        assert second[need.name].vcpus == first[need.name].vcpus and second[need.name].kept
    assert_sound(topology, second, policy)
    removed = [DomainNeed(n.name, n.vcpus, n.iothreads, current_vcpu_pins=second[n.name].vcpus)
               for n in again if n.name != 'vm010']
    third, _unplaced = allocate(topology, removed, policy)
    assert all(third[n.name].vcpus == second[n.name].vcpus for n in removed)


def test_memory_node_is_honoured_and_refused_when_full():
    topology = synthetic_host(nodes=2, cores_per_node=4, threads=1)
    policy = PinPolicy()
    placements, unplaced = allocate(topology, [DomainNeed('db', vcpus=3, memory_node=1)], policy)
    assert placements['db'].node == 1 and used_by(placements['db']) <= set(topology.cells[1])
    _placements, unplaced = allocate(topology, [DomainNeed('big', vcpus=4, memory_node=1)], policy)
    assert unplaced == {'big': '4 vCPUs do not fit on node 1 (free vCPU CPUs per node: 0: 3, 1: 3)'}


def test_offline_cpus_are_never_used():
    topology = synthetic_host(nodes=2, cores_per_node=8, offline=range(4, 12))
    placements, _unplaced = allocate(topology, [DomainNeed('vm%d' % i, vcpus=2) for i in range(20)], PinPolicy())
    for placement in placements.values():
        assert not (used_by(placement) | placement.emulator) & set(range(4, 12))


def test_smt_avoid_leaves_siblings_idle_and_share_fills_them():
    topology = synthetic_host(nodes=1, cores_per_node=4)            # cores {0,4} {1,5} {2,6} {3,7}
    avoid, _unplaced = allocate(topology, [DomainNeed('a', vcpus=2)], PinPolicy(smt='avoid'))
    share, _unplaced = allocate(topology, [DomainNeed('a', vcpus=2)], PinPolicy(smt='share'))
    assert used_by(avoid['a']) == {1, 2} and avoid['a'].emulator == {0, 4}
    assert used_by(share['a']) == {1, 5}


def test_shared_mode_floats_vcpus_over_the_node_pool():
    topology = synthetic_host(nodes=2, cores_per_node=4, threads=1)
    placements, unplaced = allocate(topology, [DomainNeed('a', vcpus=2), DomainNeed('b', vcpus=3)],
                                    PinPolicy(mode='shared'))
    assert not unplaced
    assert placements['a'].vcpus[0] == placements['a'].vcpus[1] == frozenset({1, 2, 3})
