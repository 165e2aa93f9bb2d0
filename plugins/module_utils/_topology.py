# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Host CPU topology (NUMA cells, cores, SMT siblings) from libvirt's capabilities XML. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._cpuset import format_cpuset, parse_cpuset
from ._domain_xml import etree, require_lxml
from ._errors import PlanError


@dataclass
class HostTopology:
    cells: dict                         # node id -> sorted list of CPU ids
    siblings: dict                      # cpu -> frozenset of its SMT siblings (itself included)
    online: set = field(default_factory=set)

    @property
    def cpus(self):
        return {cpu for cpus in self.cells.values() for cpu in cpus}

    def node_of(self, cpu):
        for node, cpus in self.cells.items():
            if cpu in cpus:
                return node
        return None

    def cores(self, node):
        """The node's online cores, each a sorted tuple of sibling threads, in CPU order."""
        seen, cores = set(), []
        for cpu in self.cells[node]:
            if cpu in seen or cpu not in self.online:
                continue
            core = tuple(sorted(c for c in self.siblings.get(cpu, frozenset((cpu,))) if c in self.online
                                and c in self.cells[node]))
            seen.update(core)
            cores.append(core)
        return cores

    def check_cpus(self, cpus, what):
        """Refuses CPUs that do not exist or are offline, naming them."""
        missing = set(cpus) - self.cpus
        if missing:
            raise PlanError('%s uses CPU %s, which this host does not have (it has %s)'
                            % (what, format_cpuset(missing), format_cpuset(self.cpus)))
        offline = set(cpus) - self.online
        if offline:
            raise PlanError('%s uses CPU %s, which is offline' % (what, format_cpuset(offline)))


def topology_from_capabilities(xml_text, online=None):
    """Parses ``virsh capabilities`` output; ``online`` defaults to every CPU listed."""
    require_lxml()
    root = etree.fromstring(xml_text.encode() if isinstance(xml_text, str) else xml_text)
    cells, siblings = {}, {}
    for cell in root.findall('host/topology/cells/cell'):
        node = int(cell.get('id'))
        cells[node] = []
        for cpu in cell.findall('cpus/cpu'):
            cpu_id = int(cpu.get('id'))
            cells[node].append(cpu_id)
            text = cpu.get('siblings')
            siblings[cpu_id] = frozenset(parse_cpuset(text, 'siblings')) if text else frozenset((cpu_id,))
        cells[node].sort()
    if not any(cells.values()):
        raise PlanError('the host capabilities list no NUMA cells with CPUs; the host topology is unknown')
    all_cpus = {c for cpus in cells.values() for c in cpus}
    return HostTopology(cells=cells, siblings=siblings, online=set(all_cpus if online is None else online) & all_cpus)
