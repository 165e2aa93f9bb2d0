# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""QEMU block nodes of a running disk, as libvirt 9.0 builds them, and QEMU's reports about them. Pure.

QMP ``blockdev-reopen`` replaces a node's options as a whole: an omitted ``cache`` or
``detect-zeroes`` is reset to QEMU's default, an omitted ``aio`` is refused, ``backing`` is
mandatory on a chain. So a reopen repeats every option libvirt gave the node at start and changes
only what it means to change. This file rebuilds those options the way libvirt 9.0 does
(src/qemu/qemu_block.c: ``qemuBlockStorageSourceGetBackendProps`` for the storage node,
``qemuBlockStorageSourceGetBlockdevProps`` and ``...FormatCommonProps`` for the format node,
``qemuBlockStorageSourceGetBlockdevGetCacheProps`` with ``qemuDomainDiskCachemodeFlags`` for
``cache``; ``qemuDomainPrepareDiskSourceData`` gives cache, io and discard to every image of the
chain and detect_zeroes to the top one only). What libvirt 9.0 writes on QEMU's command line here::

    storage: {driver: file|host_device, filename, aio?, node-name, cache?, auto-read-only: true, discard: unmap}
    format:  {node-name, read-only, discard?, detect-zeroes?, cache?, driver, file: <storage>, backing?}

Node names come from the live XML: libvirt names the nodes of the image with ``index='N'``
``libvirt-N-format`` and ``libvirt-N-storage``. Anything this file does not rebuild exactly
(encryption, slices, persistent reservations, copy-on-read, metadata cache size, network and
volume sources, other formats) makes :func:`disk_chain` say why, and the disk is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._disk_policy import GUEST_WRITE_CACHE, ODIRECT_CACHES, QEMU_DEFAULTS

# Only unsafe ignores the guest's flushes (cache.no-flush).
NO_FLUSH_CACHES = frozenset(('unsafe',))
# The guest-visible write cache (WCE), cache.direct and cache.no-flush of each cache mode, as libvirt's
# qemuDomainDiskCachemodeFlags gives them, from the policy's tables. WCE is the device's ``write-cache``
# property: QEMU sets it at start, and only the guest changes it afterwards.
CACHE_FLAGS = {mode: (write_cache, mode in ODIRECT_CACHES, mode in NO_FLUSH_CACHES)
               for mode, write_cache in GUEST_WRITE_CACHE.items()}
# A disk without a cache attribute: libvirt passes no cache options, and QEMU runs its default.
DEFAULT_CACHE_FLAGS = CACHE_FLAGS[QEMU_DEFAULTS['cache']]
# The formats and source types whose options this file rebuilds exactly.
REOPEN_FORMATS = frozenset(('raw', 'qcow2'))
REOPEN_SOURCE_TYPES = {'file': 'file', 'block': 'host_device'}
# <driver> attributes that shape the block nodes, and those that only configure the guest device.
_NODE_DRIVER_ATTRS = frozenset(('name', 'type', 'cache', 'io', 'discard', 'detect_zeroes'))
_DEVICE_DRIVER_ATTRS = frozenset(('iothread', 'error_policy', 'rerror_policy', 'queues', 'queue_size',
                                  'ioeventfd', 'event_idx'))


def cache_flags(mode):
    """(write cache, direct, no-flush) of a cache mode; None (unset) runs writeback."""
    if mode is None:
        return DEFAULT_CACHE_FLAGS
    return CACHE_FLAGS[mode]


def cache_mode(write_cache, direct, no_flush):
    """The cache mode with these flags, or None when no mode has them (no-flush without a write cache)."""
    for mode, flags in CACHE_FLAGS.items():
        if flags == (write_cache, direct, no_flush):
            return mode
    return None


def detect_zeroes_mode(discard, detect_zeroes):
    """What libvirt passes as ``detect-zeroes`` (virDomainDiskGetDetectZeroesMode): ``unmap`` becomes
    ``on`` unless discard is ``unmap``, since QEMU refuses unmap without it."""
    if detect_zeroes == 'unmap' and discard != 'unmap':
        return 'on'
    return detect_zeroes


@dataclass(frozen=True)
class ChainImage:
    """One image of a disk's backing chain, as the live XML describes it."""

    index: int
    source_type: str        # file or block
    path: str
    image_format: str       # raw or qcow2

    @property
    def format_node(self):
        return 'libvirt-%d-format' % self.index

    @property
    def storage_node(self):
        return 'libvirt-%d-storage' % self.index

    @property
    def storage_driver(self):
        return REOPEN_SOURCE_TYPES[self.source_type]


@dataclass(frozen=True)
class DiskChain:
    """A running disk's images, top first. ``problem`` says why it cannot be reopened ('' when it can)."""

    target: str
    alias: str | None
    readonly: bool
    images: tuple = ()
    problem: str = ''

    @property
    def top(self):
        return self.images[0] if self.images else None

    def node_names(self):
        return [name for image in self.images for name in (image.format_node, image.storage_node)]


def _index(element):
    try:
        value = int(element.get('index', ''))
    except ValueError:
        return None
    return value if value > 0 else None


def _source_path(source_type, source):
    if source is None:
        return None
    return (source.get('file') if source_type == 'file' else source.get('dev')) or None


def _unsupported_source(source_type, source):
    if source_type not in REOPEN_SOURCE_TYPES:
        return "its source type is '%s' (live apply handles file and block sources)" % source_type
    if source is None:
        return 'it has no source'
    for child, what in (('encryption', 'encryption'), ('slices', 'storage slices'),
                        ('reservations', 'persistent reservations')):
        if source.find(child) is not None:
            return 'it uses %s, whose QEMU options live apply does not rebuild' % what
    return ''


def disk_chain(disk):
    """The DiskChain of a ``<disk>`` element of a running domain's live XML."""
    target_el = disk.find('target')
    target = target_el.get('dev', '?') if target_el is not None else '?'
    alias_el = disk.find('alias')
    alias = alias_el.get('name') if alias_el is not None else None
    readonly = disk.find('readonly') is not None

    def refuse(why):
        return DiskChain(target, alias, readonly, (), why)

    driver = disk.find('driver')
    if driver is None:
        return refuse('it has no <driver> element')
    unknown = sorted(set(driver.attrib) - _NODE_DRIVER_ATTRS - _DEVICE_DRIVER_ATTRS)
    if unknown:
        return refuse('its driver sets %s, which live apply does not rebuild' % ', '.join(unknown))
    if len(driver):
        return refuse('its driver has <%s>, which live apply does not rebuild' % driver[0].tag)
    if disk.find('encryption') is not None:
        return refuse('it is encrypted')
    images = []
    source_type, source, image_format, index = disk.get('type', 'file'), disk.find('source'), \
        driver.get('type'), _index(disk.find('source')) if disk.find('source') is not None else None
    element = disk
    while True:
        why = _unsupported_source(source_type, source)
        if why:
            return refuse(why if not images else 'a backing image: ' + why)
        if image_format not in REOPEN_FORMATS:
            return refuse("its %simage format is '%s' (live apply handles raw and qcow2)"
                          % ('backing ' if images else '', image_format))
        path = _source_path(source_type, source)
        if index is None or path is None:
            return refuse('the live XML gives no node index or path for %s' % (path or 'its source'))
        images.append(ChainImage(index, source_type, path, image_format))
        backing = element.find('backingStore')
        if backing is None or backing.get('type') is None:     # <backingStore/>: the chain ends
            break
        if image_format != 'qcow2':
            return refuse("a %s image cannot have a backing image" % image_format)
        fmt = backing.find('format')
        element, source_type, source = backing, backing.get('type'), backing.find('source')
        image_format, index = (fmt.get('type') if fmt is not None else None), _index(backing)
    return DiskChain(target, alias, readonly, tuple(images))


def _cache_options(cache):
    if cache is None:
        return None
    _write_cache, direct, no_flush = CACHE_FLAGS[cache]
    return {'direct': direct, 'no-flush': no_flush}


def storage_options(image, settings):
    """The storage node's options; ``settings`` holds the disk's driver attributes (cache, io)."""
    options = {'driver': image.storage_driver, 'filename': image.path}
    if settings.get('io'):
        options['aio'] = settings['io']
    options['node-name'] = image.storage_node
    cache = _cache_options(settings.get('cache'))
    if cache:
        options['cache'] = cache
    options['auto-read-only'] = True
    options['discard'] = 'unmap'
    return options


def format_options(image, backing, settings, top, readonly):
    """The format node's options; ``backing`` is the next ChainImage or None."""
    options = {'node-name': image.format_node, 'read-only': readonly}
    if settings.get('discard'):
        options['discard'] = settings['discard']
    if top:
        zeroes = detect_zeroes_mode(settings.get('discard'), settings.get('detect_zeroes'))
        if zeroes:
            options['detect-zeroes'] = zeroes
    cache = _cache_options(settings.get('cache'))
    if cache:
        options['cache'] = cache
    options['driver'] = image.image_format
    options['file'] = image.storage_node
    if image.image_format == 'qcow2':
        options['backing'] = backing.format_node if backing is not None else None
    return options


def reopen_options(chain, settings):
    """The ``options`` list of one ``blockdev-reopen`` of a whole chain: each image's format node,
    then its storage node, top first. ``settings``: the driver attributes (cache, io, discard,
    detect_zeroes) the nodes should have, where io must be the one QEMU runs (it cannot change)."""
    if chain.problem or not chain.images:
        raise ValueError('disk %s cannot be reopened: %s' % (chain.target, chain.problem or 'no images'))
    # QEMU accepts this on a reopen although it refuses it at start; never ask for it.
    if settings.get('io') == 'native' and not cache_flags(settings.get('cache'))[1]:
        raise ValueError('disk %s: aio=native needs O_DIRECT, cache %s has none' % (chain.target, settings.get('cache')))
    options = []
    for position, image in enumerate(chain.images):
        backing = chain.images[position + 1] if position + 1 < len(chain.images) else None
        top = position == 0
        options.append(format_options(image, backing, settings, top, chain.readonly if top else True))
        options.append(storage_options(image, settings))
    return options


# --- what QEMU reports -----------------------------------------------------------------------

@dataclass(frozen=True)
class NodeState:
    """One node of ``query-named-block-nodes``."""

    name: str
    driver: str
    filename: str | None
    read_only: bool
    direct: bool
    no_flush: bool
    detect_zeroes: str
    backing_file: str | None = None


def node_states(named_nodes):
    """{node name: NodeState} from the ``return`` of ``query-named-block-nodes``."""
    states = {}
    for node in named_nodes or ():
        name = node.get('node-name')
        cache = node.get('cache') or {}
        if not name:
            continue
        states[name] = NodeState(name=name, driver=node.get('drv', ''), filename=node.get('file'),
                                 read_only=bool(node.get('ro')), direct=bool(cache.get('direct')),
                                 no_flush=bool(cache.get('no-flush')), detect_zeroes=node.get('detect_zeroes', 'off'),
                                 # the header's name, resolved (it may be relative to the image)
                                 backing_file=(node.get('image') or {}).get('full-backing-filename')
                                 or node.get('backing_file'))
    return states


@dataclass(frozen=True)
class DeviceState:
    """A guest device of ``query-block``: its qdev path or id, its top node and its write cache."""

    qdev: str
    node: str
    write_cache: bool


def device_states(query_block):
    """{top node name: DeviceState} from the ``return`` of ``query-block`` (devices with media)."""
    devices = {}
    for entry in query_block or ():
        inserted = entry.get('inserted') or {}
        node = inserted.get('node-name')
        if node:
            devices[node] = DeviceState(qdev=entry.get('qdev') or entry.get('device') or '', node=node,
                                        write_cache=bool((inserted.get('cache') or {}).get('writeback')))
    return devices


def _qdev_matches(qdev, alias):
    # virtio-blk reports /machine/peripheral/ALIAS/virtio-backend, SATA/SCSI devices their id.
    return qdev == alias or qdev.startswith('/machine/peripheral/%s/' % alias)


def chain_mismatch(chain, nodes, devices):
    """Why QEMU's nodes do not match ``chain`` as libvirt named them, or '' when they do."""
    top = chain.top
    device = devices.get(top.format_node)
    if device is None:
        return 'QEMU has no guest device on node %s' % top.format_node
    if chain.alias and not _qdev_matches(device.qdev, chain.alias):
        return 'node %s belongs to device %s, not %s' % (top.format_node, device.qdev, chain.alias)
    for position, image in enumerate(chain.images):
        fmt, storage = nodes.get(image.format_node), nodes.get(image.storage_node)
        if fmt is None or storage is None:
            return 'QEMU has no node %s' % (image.format_node if fmt is None else image.storage_node)
        if fmt.driver != image.image_format or storage.driver != image.storage_driver:
            return 'QEMU runs %s/%s for %s, the live XML says %s/%s' % (
                fmt.driver, storage.driver, image.path, image.image_format, image.storage_driver)
        if storage.filename != image.path:
            return 'node %s opens %s, the live XML says %s' % (image.storage_node, storage.filename, image.path)
        backing = chain.images[position + 1] if position + 1 < len(chain.images) else None
        if fmt.backing_file != (backing.path if backing else None):
            return 'QEMU gives %s the backing file %s, the live XML %s' % (
                image.path, fmt.backing_file, backing.path if backing else 'none')
    return ''
