# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""libvirt cpuset strings ('0-3,^2,8') to sets of CPU numbers and back."""

from __future__ import annotations

import re

from ._errors import PlanError

_PART_RE = re.compile(r'^(\^?)(\d+)(?:-(\d+))?$')
# libvirt's own bound (VIR_DOMAIN_CPUMASK_LEN, 16384 since libvirt 8.x): CPU numbers 0-16383. Also keeps
# '0-99999999' from building a set of a hundred million numbers.
MAX_CPUS = 16384


def parse_cpuset(text, what='cpuset'):
    """'0-3,^2,8' -> {0, 1, 3, 8}; a malformed string raises PlanError naming ``what``."""
    included, excluded = set(), set()
    parts = [p.strip() for p in str(text).split(',')]
    if not text or not all(parts):
        raise PlanError("%s '%s' is not a cpuset: use CPU numbers and ranges such as 0-3,8,^2" % (what, text))
    for part in parts:
        match = _PART_RE.match(part)
        if not match:
            raise PlanError("%s '%s' is not a cpuset: '%s' is not a CPU number or range" % (what, text, part))
        low = int(match.group(2))
        high = int(match.group(3)) if match.group(3) else low
        if high < low:
            raise PlanError("%s '%s' is not a cpuset: range %s goes backwards" % (what, text, part))
        if high >= MAX_CPUS:
            raise PlanError("%s '%s' is not a cpuset: CPU %d is beyond %d, the highest libvirt accepts"
                            % (what, text, high, MAX_CPUS - 1))
        (excluded if match.group(1) else included).update(range(low, high + 1))
    result = included - excluded
    if not result:
        raise PlanError("%s '%s' selects no CPU" % (what, text))
    return result


def format_cpuset(cpus):
    """{0, 1, 3, 8} -> '0-1,3,8' (libvirt's own short form)."""
    cpus = sorted(cpus)
    parts, start = [], None
    for index, cpu in enumerate(cpus):
        if start is None:
            start = cpu
        if index + 1 == len(cpus) or cpus[index + 1] != cpu + 1:
            parts.append(str(start) if start == cpu else '%d-%d' % (start, cpu))
            start = None
    return ','.join(parts)
