# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What libvirt 9.0 and QEMU 7.2 of these machines said about running disks (tools/record-live-data)."""

from __future__ import annotations

import json
import os

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'unit', 'plugins', 'module_utils',
                    'data', 'live')


def load(name):
    """A recorded file: XML as text, QMP replies and -blockdev options as JSON."""
    with open(os.path.join(DATA, name), encoding='utf-8') as handle:
        return handle.read() if name.endswith('.xml') else json.load(handle)


def live_disks(state):
    """{target: <disk> element} of the recorded live XML of ``state`` ('writeback' or 'none')."""
    from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import parse_domain

    root = parse_domain(load('%s.live.xml' % state))
    return {d.find('target').get('dev'): d for d in root.findall('devices/disk')}
