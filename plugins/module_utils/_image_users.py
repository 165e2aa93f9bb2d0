# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Which domains use which image files, anywhere in their backing chains: read once per run.

libvirt's inactive XML has no ``<backingStore>``, so the chains are read here from the headers of
the images the domains declare, as QEMU would follow them: a disk the domain declares raw ends its
chain whatever its bytes say (a guest may have written a qcow2 header there), only regular files
and block devices are opened, non-blocking, and a chain is at most ``MAX_CHAIN`` files.
"""

from __future__ import annotations

import os

from ._domain_xml import parse_domain
from ._errors import KvmioError, PlanError
from ._image_chain import MAX_CHAIN, walk_chain
from ._image_plan import ImageUse, image_disks
from ._libvirt import LibvirtClient
from ._parallel import map_threads

VIR_ERR_NO_DOMAIN = 42          # libvirt's error code for a domain that no longer exists


def read_domain_disks(uri):
    """[(domain name, running, [(path, declared format, device)])] of every domain at ``uri``.

    A running domain counts twice: as running (its live XML) and, when it is persistent, as defined
    (the XML it starts with next time), since both name images it must keep.
    """
    with LibvirtClient(uri) as client:
        domains = client.all_domains()
        running = client.active_names()
        persistent = set(client.persistent_domains())

        def read(dom):
            name = dom.name()
            found = []
            try:
                if name in running:
                    found.append((name, True, parse_domain(client.live_xml(dom), 'the live XML of domain %s' % name)))
                if name in persistent:
                    found.append((name, False, parse_domain(client.inactive_xml(dom), 'the XML of domain %s' % name)))
            except KvmioError as err:
                if err.details.get('libvirt_error_code') != VIR_ERR_NO_DOMAIN:
                    raise
                return []           # undefined since it was listed: it uses nothing any more
            return found

        parsed = [entry for entries in map_threads(read, domains) for entry in entries]
        volumes = {}
        for _name, _running, root in parsed:
            for key in _volume_keys(root):
                if key not in volumes:
                    volumes[key] = client.volume_path(*key)
    return [(name, is_running, image_disks(root, volumes)) for name, is_running, root in parsed]


def _volume_keys(root):
    return [(s.get('pool'), s.get('volume')) for s in root.findall("devices/disk[@type='volume']/source")
            if s.get('pool') and s.get('volume')]


def image_uses(domain_disks):
    """{real path: [ImageUse]} for every file of every domain's chains."""
    uses = {}
    chains = {}
    for domain, running, disks in domain_disks:
        for path, fmt, _device in disks:
            key = (path, fmt)
            if key not in chains:
                chains[key] = _chain_files(path, fmt)
            via = None
            for real, file_fmt in chains[key]:
                use = ImageUse(domain=domain, running=running, declared_format=file_fmt, via=via)
                if use not in uses.setdefault(real, []):
                    uses[real].append(use)
                via = real
    return uses


def _chain_files(path, fmt):
    """[(real path, format it is read as)] of a declared disk and its backing files (best effort)."""
    files = [(os.path.realpath(path), fmt)]
    try:
        chain = walk_chain(path, fmt, strict=False, max_depth=MAX_CHAIN)
    except (PlanError, OSError):
        return files              # the disk itself still counts as used
    try:
        files += [(layer.real, layer.fmt) for layer in chain.layers[1:]]
        for layer in chain.layers:          # an external data file is part of the image too
            if layer.header is not None and layer.header.data_file:
                name = layer.header.data_file
                files.append((os.path.realpath(os.path.join(os.path.dirname(layer.path), name)), 'raw'))
    finally:
        chain.close()
    return files


def read_image_uses(uri):
    """``image_uses`` of the domains at ``uri``; raises LibvirtUnavailable when libvirt cannot be asked."""
    return image_uses(read_domain_disks(uri))
