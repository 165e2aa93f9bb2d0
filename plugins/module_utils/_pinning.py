# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The host-wide CPU allocator: vCPU, emulator and iothread pins for every domain at once. Pure.

- ``reserved`` CPUs are never used. On each NUMA node the first free core (or the
  ``housekeeping`` CPUs given) runs emulator threads and iothreads, off every vCPU's CPU.
- ``dedicated``: each vCPU gets a CPU of its own. SMT ``share`` gives a domain whole cores and
  fills their sibling threads with its own vCPUs; ``avoid`` uses one thread per core and leaves the
  sibling idle. A core is never split between two domains.
- ``shared``: a domain's vCPUs float over its node's vCPU CPUs.
- A domain stays on the node holding its memory (``memory_node``) when one is known.
- Stable: a domain whose pins are still valid keeps them, so adding a domain never moves others.
- What does not fit is reported in ``unplaced`` with the reason; nothing is overcommitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._cpuset import format_cpuset


@dataclass(frozen=True)
class DomainNeed:
    name: str
    vcpus: int
    iothreads: int = 0
    memory_node: int | None = None
    current_vcpu_pins: dict = field(default_factory=dict)     # vcpu -> frozenset of CPUs
    fixed: bool = False        # not ours to move (not selected): its valid pins only occupy CPUs


@dataclass(frozen=True)
class PinPolicy:
    mode: str = 'dedicated'             # dedicated | shared
    smt: str = 'share'                  # share | avoid
    reserved: frozenset = frozenset()
    housekeeping: frozenset | None = None


@dataclass
class Placement:
    node: int
    vcpus: dict                          # vcpu -> frozenset
    emulator: frozenset
    iothreads: dict                      # iothread id -> frozenset
    kept: bool = False

    def as_dict(self):
        return {'node': self.node, 'kept': self.kept,
                'vcpus': {str(v): format_cpuset(c) for v, c in sorted(self.vcpus.items())},
                'emulator': format_cpuset(self.emulator),
                'iothreads': {str(i): format_cpuset(c) for i, c in sorted(self.iothreads.items())}}


class Allocator:
    def __init__(self, topology, policy):
        self.topology = topology
        self.policy = policy
        self.available = {node: [c for c in cpus if c in topology.online and c not in policy.reserved]
                          for node, cpus in topology.cells.items()}
        self.housekeeping = self._housekeeping()
        self.free_cores = {}
        for node in self.available:
            pool = set(self.available[node]) - self.housekeeping[node]
            self.free_cores[node] = [core for core in topology.cores(node) if set(core) <= pool]

    def _housekeeping(self):
        result = {}
        for node, cpus in self.available.items():
            if self.policy.housekeeping is not None:
                result[node] = frozenset(c for c in self.policy.housekeeping if c in cpus)
            else:
                cores = [core for core in self.topology.cores(node) if set(core) <= set(cpus)]
                result[node] = frozenset(cores[0]) if cores else frozenset()
        return result

    def _side(self, node, need):
        hk = self.housekeeping[node] or frozenset(self.available[node])
        return hk, {i: hk for i in range(1, need.iothreads + 1)}

    def _take_cores(self, node, vcpus):
        """Cores for ``vcpus`` vCPUs on ``node`` under the SMT rule, or None if they do not fit."""
        threads, cores = [], []
        for core in self.free_cores[node]:
            if len(threads) >= vcpus:
                break
            cores.append(core)
            threads.extend(core if self.policy.smt == 'share' else core[:1])
        if len(threads) < vcpus:
            return None
        return cores, threads[:vcpus]

    def _keep(self, need):
        """The domain's current dedicated pins, if they are still valid here."""
        pins = need.current_vcpu_pins
        if self.policy.mode != 'dedicated' or sorted(pins) != list(range(need.vcpus)):
            return None
        if any(len(cpus) != 1 for cpus in pins.values()):
            return None
        used = [next(iter(c)) for c in pins.values()]
        if len(set(used)) != len(used):
            return None
        nodes = {self.topology.node_of(cpu) for cpu in used}
        if len(nodes) != 1 or None in nodes:
            return None
        node = nodes.pop()
        if need.memory_node is not None and node != need.memory_node:
            return None
        cores = [core for core in self.free_cores[node] if set(core) & set(used)]
        covered = {c for core in cores for c in core}
        if not set(used) <= covered:
            return None
        if self.policy.smt == 'avoid' and any(len(set(core) & set(used)) > 1 for core in cores):
            return None
        for core in cores:
            self.free_cores[node].remove(core)
        emulator, iothreads = self._side(node, need)
        return Placement(node, dict(pins), emulator, iothreads, kept=True)

    def _nodes_for(self, need):
        if need.memory_node is not None:
            return [need.memory_node] if need.memory_node in self.free_cores else []
        return sorted(self.free_cores, key=lambda n: (-sum(len(c) for c in self.free_cores[n]), n))

    def place(self, need):
        if self.policy.mode == 'shared':
            return self._place_shared(need)
        for node in self._nodes_for(need):
            taken = self._take_cores(node, need.vcpus)
            if taken is None:
                continue
            cores, threads = taken
            for core in cores:
                self.free_cores[node].remove(core)
            emulator, iothreads = self._side(node, need)
            return Placement(node, {i: frozenset((cpu,)) for i, cpu in enumerate(threads)}, emulator, iothreads), ''
        where = ('node %s' % need.memory_node) if need.memory_node is not None else 'any node'
        free = {n: sum(len(c) if self.policy.smt == 'share' else 1 for c in cores)
                for n, cores in self.free_cores.items()}
        return None, ('%d vCPUs do not fit on %s (free vCPU CPUs per node: %s)'
                      % (need.vcpus, where, ', '.join('%s: %d' % kv for kv in sorted(free.items()))))

    def _place_shared(self, need):
        nodes = self._nodes_for(need)
        current = set().union(*need.current_vcpu_pins.values()) if need.current_vcpu_pins else set()
        for node in nodes:
            pool = frozenset(c for core in self.free_cores[node] for c in core)
            if current and current == pool:
                nodes = [node]
                break
        for node in nodes:
            pool = frozenset(c for core in self.free_cores[node] for c in core)
            if len(pool) >= need.vcpus:
                emulator, iothreads = self._side(node, need)
                return Placement(node, {i: pool for i in range(need.vcpus)}, emulator, iothreads), ''
        return None, '%d vCPUs exceed the vCPU CPUs of every node' % need.vcpus


def allocate(topology, needs, policy):
    """({name: Placement}, {name: why it did not fit}). Current valid pins are kept first."""
    allocator = Allocator(topology, policy)
    placements, unplaced = {}, {}
    ordered = sorted(needs, key=lambda n: n.name)
    if policy.mode == 'dedicated':
        for need in ordered:
            kept = allocator._keep(need)
            if kept:
                placements[need.name] = kept
    for need in ordered:
        if need.name in placements or need.fixed:
            continue
        placement, why = allocator.place(need)
        if placement is None:
            unplaced[need.name] = why
        else:
            placements[need.name] = placement
    return placements, unplaced
