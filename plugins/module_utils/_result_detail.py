# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""How much a host-wide module returns: everything (``full``) or what a fleet run needs (``summary``).

A result is stored once per host and run by AWX (its job events) and kept in memory by
``ansible-playbook``: with ``full``, every disk's before/after settings, reasons and probe facts
come to about 2 KB per domain (1.1 MB for 500 domains). ``summary`` keeps what the roles and
people act on - each domain's name, whether it changed and needs a restart, the counts, the backups
- and drops the per-disk and per-change detail. qcow2_create's list form does the same per image
(about 900 bytes each with ``full``). Pure: no I/O.
"""

from __future__ import annotations

RESULT_DETAIL_CHOICES = ('full', 'summary')
RESULT_DETAIL_ARGUMENT_SPEC = {
    'result_detail': {'type': 'str', 'choices': list(RESULT_DETAIL_CHOICES), 'default': 'full'},
}


def shape_entries(entries, detail, keep):
    """The per-domain (or per-image) entries as ``detail`` asks: all their keys, or only ``keep`` (in that order).

    An item of ``keep`` is a key, or (key, sub-keys) to keep only those keys of a dict value."""
    if detail == 'full':
        return entries
    shaped = []
    for entry in entries:
        item = {}
        for key in keep:
            key, sub = (key, None) if isinstance(key, str) else key
            if key in entry:
                value = entry[key]
                item[key] = {k: value[k] for k in sub if k in value} if sub and isinstance(value, dict) else value
        shaped.append(item)
    return shaped
