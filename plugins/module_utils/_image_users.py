# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Which domains use which image files, anywhere in their backing chains: read once per run.

libvirt's inactive XML usually has no ``<backingStore>``, so the chains are read here from the headers
of the images the domains declare, as QEMU would follow them: a disk the domain declares raw ends its
chain whatever its bytes say (a guest may have written a qcow2 header there), only regular files
and block devices are opened, non-blocking, and a chain is followed to libvirt's own depth limit.
A ``<backingStore>`` chain a user wrote into the domain XML is kept by libvirt (5.10+) and given to
QEMU whatever the headers say: each of its levels counts too, in its declared format
(``_image_plan.image_disks``), and its files' own header chains are walked as well.

Files are keyed by what they are, ``(st_dev, st_ino)``, never by name: a bind mount or a hard link
gives one file many paths, and every path of a used file is used. The files a disk uses are its
chain, each layer's external data file, both meanings of a relative name that differ
(``_image_chain.resolve_relative``) and the files behind a block device (loop devices, through
partitions, device-mapper or md slaves and loops on loops: ``_image_chain.block_backing_files``).
Besides its disks, a domain uses the other host files QEMU opens for it (``_image_plan.HOST_FILES``:
firmware, NVRAM, kernel, initrd...).

Every chain walk is bounded in time (``_storage_probe.BoundedReads``): a disk on a hung NFS or FUSE
mount makes its users *unknown* (``ImageUses.unknown`` says which disk and why), as does a walk that
stops before the end of a chain; callers then refuse what could harm an unknown user.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ._domain_xml import parse_domain
from ._errors import KvmioError
from ._image_chain import block_backing_files, note_read, printable, walk_chain
from ._image_plan import HOST_FILE_ROLES, ImageUse, image_disks, volume_keys
from ._libvirt import LibvirtClient
from ._parallel import map_threads
from ._storage_probe import BoundedReads

VIR_ERR_NO_DOMAIN = 42          # libvirt's error code for a domain that no longer exists


@dataclass
class ImageUses:
    """``files``: {(st_dev, st_ino): [ImageUse]}; ``unknown``: why some users may be missing from
    ``files`` (one text per domain disk whose chain could not be read to its end)."""

    files: dict = field(default_factory=dict)
    unknown: list = field(default_factory=list)

    def of(self, ident):
        return self.files.get(ident, [])


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
            for key in volume_keys(root):
                if key not in volumes:
                    volumes[key] = client.volume_path(*key)
    return [(name, is_running, image_disks(root, volumes)) for name, is_running, root in parsed]


def running_domains(uri):
    """The names of the domains running at ``uri`` now (raises LibvirtUnavailable)."""
    with LibvirtClient(uri) as client:
        return set(client.active_names())


def image_uses(domain_disks, reads=None):
    """ImageUses of every file of every domain's chains; ``reads`` bounds each walk (BoundedReads)."""
    reads = reads or BoundedReads()
    uses = ImageUses()
    chains = {}
    for domain, running, disks in domain_disks:
        for path, fmt, device, declared_via in disks:
            role = device if device in HOST_FILE_ROLES else None
            if path is None:
                # A file libvirt could not name (an unresolvable volume): whoever it is, it is used.
                text = 'domain %s, %s: %s' % (domain, role or device, declared_via)
                if text not in uses.unknown:
                    uses.unknown.append(text)
                continue
            key = (path, fmt)
            if key not in chains:
                done, value = reads.call(path, _chain_files, path, fmt)
                chains[key] = value if done else ([], reads.why(path, value))
            files, unknown = chains[key]
            if unknown:
                text = 'domain %s, %s %s: %s' % (domain, role or 'disk', printable(path), unknown)
                if text not in uses.unknown:
                    uses.unknown.append(text)
            for ident, file_fmt, via in files:
                via = declared_via if via is None else via      # a level of a declared <backingStore>
                use = ImageUse(domain=domain, running=running, declared_format=file_fmt,
                               via=None if via is None else printable(via), role=role if via is None else None)
                if use not in uses.files.setdefault(ident, []):
                    uses.files[ident].append(use)
    return uses


def _chain_files(path, fmt):
    """([(file identity, format it is read as, the path it is used through or None)], why the
    list may be incomplete or '') of a declared disk: its chain, data files, loop backing files."""
    files, unknown = [], []
    chain = walk_chain(path, fmt, strict=False)
    try:
        if not chain.layers:            # not an image QEMU could open, or unreadable: the name still counts
            ident = file_ident(path)
            if ident is not None:
                files.append((ident, fmt, None))
            return files, chain.incomplete
        via = None
        for layer in chain.layers:
            files.append((layer.ident, layer.fmt, via))
            if layer.kind == 'block':
                behind, why = block_backing_files(layer.st)
                for ident, device, name in behind:
                    files.append((ident, layer.fmt, '%s (a loop device on %s)' % (device, name)))
                if why:
                    unknown.append(why)
            for extra in (layer.data_path, layer.backing_other):
                if extra is not None:
                    more, why = _side_files(extra, layer)
                    files.extend(more)
                    if why:
                        unknown.append(why)
            via = layer.real
        if chain.incomplete:
            unknown.append(chain.incomplete)
    finally:
        chain.close()
    return files, '; '.join(unknown)


def _side_files(path, layer):
    """The files of a path a layer names besides its backing file: its external data file (raw bytes),
    or the second meaning of a relative backing name (walked as a chain of its own, in the format the
    layer's header records)."""
    if path == layer.data_path:
        fmt = 'raw'
    else:
        fmt = layer.header.backing_format or 'raw'
    chain = walk_chain(path, fmt, strict=False)
    try:
        files = [(side.ident, side.fmt, layer.real) for side in chain.layers]
        return files, chain.incomplete
    finally:
        chain.close()


def read_image_uses(uri, reads=None):
    """``image_uses`` of the domains at ``uri``; raises LibvirtUnavailable when libvirt cannot be asked."""
    return image_uses(read_domain_disks(uri), reads)


def file_ident(path):
    """(st_dev, st_ino) of ``path`` (followed), or None."""
    try:
        note_read(path)
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
