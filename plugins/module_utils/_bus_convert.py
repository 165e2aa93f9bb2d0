# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Moving disks to virtio-scsi or virtio-blk in one operation on the domain XML.

A conversion rewrites the target (bus and a free name with the bus's prefix), drops the old
``<address>`` (virtio-blk: libvirt assigns a PCI slot; virtio-scsi: an explicit drive address on the
chosen controller), drops settings the new bus does not accept, adds one virtio-scsi controller
when there is none, and removes a controller the conversion emptied unless the machine has it
built in (libvirt would add it back, and the next run would see a change again).
"""

from __future__ import annotations

from ._domain_plan import Change
from ._domain_xml import machine_type, make_child, remove_child, set_attr

BUS_PREFIX = {'virtio': 'vd', 'scsi': 'sd', 'sata': 'sd', 'ide': 'hd', 'usb': 'sd', 'fdc': 'fd', 'xen': 'xvd'}
CONVERTIBLE_FROM = {'scsi': frozenset(('ide', 'sata', 'virtio')), 'virtio': frozenset(('ide', 'sata'))}
# Settings valid only on one bus, dropped when a disk leaves it.
_VIRTIO_ONLY_DRIVER_ATTRS = ('iothread', 'queues', 'queue_size', 'ioeventfd', 'event_idx')
_NOT_ON_VIRTIO = ('wwn', 'vendor', 'product')
_CONTROLLER_TYPE_OF_BUS = {'ide': 'ide', 'sata': 'sata', 'scsi': 'scsi'}


def dev_suffix(index):
    """0 -> 'a', 25 -> 'z', 26 -> 'aa' (libvirt's virDiskNameToIndex in reverse)."""
    letters = ''
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord('a') + rem) + letters
    return letters


def _free_name(prefix, taken):
    index = 0
    while prefix + dev_suffix(index) in taken:
        index += 1
    return prefix + dev_suffix(index)


def drive_controller(device):
    """The index of the controller a device's drive address names (0 without one), None if unreadable."""
    address = device.find('address')
    if address is not None and address.get('type') == 'drive':
        try:
            return int(address.get('controller', '0'))
        except ValueError:
            return None
    return 0


def controllers_of_type(devices, ctype):
    """{index: element} of the ``<controller type=ctype>`` children of ``<devices>``."""
    found = {}
    for ctrl in devices.findall('controller'):
        if ctrl.get('type') == ctype:
            try:
                found[int(ctrl.get('index', '0'))] = ctrl
            except ValueError:
                continue
    return found


def _built_in(ctype, index, root):
    machine = machine_type(root)
    arch_x86 = (root.find('os/type') is None or root.find('os/type').get('arch', 'x86_64') in ('x86_64', 'i686'))
    if index != 0 or not arch_x86:
        return False
    if ctype == 'ide':
        return 'q35' not in machine and (machine == '' or machine.startswith('pc'))
    if ctype == 'sata':
        return 'q35' in machine
    return False


def _controller_in_use(devices, ctype, index):
    for device in devices:
        if not isinstance(device.tag, str):
            continue
        if device.tag == 'disk':
            target = device.find('target')
            bus = target.get('bus') if target is not None else None
            if _CONTROLLER_TYPE_OF_BUS.get(bus) == ctype and drive_controller(device) == index:
                return True
        elif device.tag != 'controller':
            address = device.find('address')
            if (ctype == 'scsi' and address is not None and address.get('type') == 'drive'
                    and drive_controller(device) == index):
                return True
    return False


class BusConversion:
    """Converts the chosen disks of one domain; records changes and warnings as it goes."""

    def __init__(self, root, scsi_queues=None):
        self.root = root
        self.devices = root.find('devices')
        self.scsi_queues = scsi_queues
        self.changes = []
        self.warnings = []
        self._emptied = set()    # (controller type, index) that lost a disk

    def convert(self, disks_by_bus):
        """``disks_by_bus``: {'scsi': [disk elements], 'virtio': [...]} to move to that bus."""
        taken = {t.get('dev') for t in self.devices.findall('disk/target') if t.get('dev')}
        moving = [d for ds in disks_by_bus.values() for d in ds]
        for disk in moving:
            taken.discard(disk.find('target').get('dev'))
        if self.scsi_queues is not None:
            self._set_queues_on_existing()
        if disks_by_bus.get('scsi'):
            self._to_scsi(disks_by_bus['scsi'], taken)
        for disk in disks_by_bus.get('virtio', ()):
            self._to_virtio(disk, taken)
        self._remove_emptiedcontrollers_of_type()
        return self.changes

    # --- virtio-scsi ----------------------------------------------------------------------

    def _virtio_scsi_controller(self, iothread):
        scsi = controllers_of_type(self.devices, 'scsi')
        for index in sorted(scsi):
            if scsi[index].get('model') == 'virtio-scsi':
                return index
        used = set(scsi)
        for device in self.devices.findall('disk'):
            target = device.find('target')
            if target is not None and target.get('bus') == 'scsi':
                used.add(drive_controller(device))
        index = 0
        while index in used:
            index += 1
        anchor = self._insert_index('controller')
        ctrl = make_child(self.devices, 'controller', {'type': 'scsi', 'index': index, 'model': 'virtio-scsi'},
                          index=anchor)
        attrs = {}
        if self.scsi_queues is not None:
            attrs['queues'] = self.scsi_queues
        if iothread is not None:
            attrs['iothread'] = iothread
        if attrs:
            make_child(ctrl, 'driver', attrs)
        self.changes.append(Change('controller scsi %d' % index, 'model', None, 'virtio-scsi%s' % ''.join(
            ' %s=%s' % kv for kv in sorted(attrs.items())), 'bus=scsi needs a virtio-scsi controller'))
        return index

    def _set_queues(self, ctrl, index):
        if self.scsi_queues is None:
            return
        driver = ctrl.find('driver')
        if driver is None:
            driver = make_child(ctrl, 'driver', index=0)
        before = driver.get('queues')
        if set_attr(driver, 'queues', self.scsi_queues):
            self.changes.append(Change('controller scsi %d' % index, 'queues', before, str(self.scsi_queues),
                                       'scsi_queues'))

    def _set_queues_on_existing(self):
        scsi = controllers_of_type(self.devices, 'scsi')
        for index in sorted(scsi):
            if scsi[index].get('model') == 'virtio-scsi':
                self._set_queues(scsi[index], index)

    def _insert_index(self, tag):
        """Position after the last ``tag`` child, else after the last disk, for readable diffs."""
        for wanted in (tag, 'disk'):
            positions = [pos for pos, child in enumerate(self.devices) if child.tag == wanted]
            if positions:
                return positions[-1] + 1
        return None

    def _to_scsi(self, disks, taken):
        iothread = None
        for disk in disks:
            driver = disk.find('driver')
            if driver is not None and driver.get('iothread') and iothread is None:
                iothread = driver.get('iothread')
        if iothread is not None and self.root.find('iothreads') is None:
            iothread = None
        index = self._virtio_scsi_controller(iothread)
        used_units = set()
        for device in self.devices:
            if not isinstance(device.tag, str) or device in disks:
                continue
            address = device.find('address')
            if address is not None and address.get('type') == 'drive' and drive_controller(device) == index:
                target = device.find('target')
                if device.tag == 'disk' and (target is None or target.get('bus') != 'scsi'):
                    continue
                used_units.add((address.get('bus', '0'), address.get('target', '0'), address.get('unit', '0')))
        unit = 0
        for disk in disks:
            while ('0', '0', str(unit)) in used_units:
                unit += 1
            self._retarget(disk, 'scsi', taken)
            address = disk.find('address')
            if address is not None:
                remove_child(disk, address)
            make_child(disk, 'address', {'type': 'drive', 'controller': index, 'bus': 0, 'target': 0, 'unit': unit})
            used_units.add(('0', '0', str(unit)))
            self._drop_virtio_settings(disk)

    # --- virtio-blk -----------------------------------------------------------------------

    def _to_virtio(self, disk, taken):
        self._retarget(disk, 'virtio', taken)
        address = disk.find('address')
        if address is not None:
            remove_child(disk, address)
        for tag in _NOT_ON_VIRTIO:
            child = disk.find(tag)
            if child is not None:
                remove_child(disk, child)
        target = disk.find('target')
        for attr in ('removable', 'rotation_rate'):
            set_attr(target, attr, None)

    # --- shared ---------------------------------------------------------------------------

    def _retarget(self, disk, bus, taken):
        target = disk.find('target')
        old_bus, old_dev = target.get('bus'), target.get('dev')
        if old_bus in _CONTROLLER_TYPE_OF_BUS:
            self._emptied.add((_CONTROLLER_TYPE_OF_BUS[old_bus], drive_controller(disk)))
        prefix = BUS_PREFIX[bus]
        new_dev = old_dev if (old_dev and old_dev.startswith(prefix) and old_dev not in taken) else _free_name(prefix, taken)
        taken.add(new_dev)
        target.set('bus', bus)
        target.set('dev', new_dev)
        if old_bus != bus:
            self.changes.append(Change(old_dev, 'bus', old_bus, bus, 'bus=%s' % bus))
        if old_dev != new_dev:
            self.changes.append(Change(old_dev, 'target', old_dev, new_dev,
                                       'target names follow the bus (%s*)' % prefix))

    def _drop_virtio_settings(self, disk):
        driver = disk.find('driver')
        if driver is not None:
            for attr in _VIRTIO_ONLY_DRIVER_ATTRS:
                set_attr(driver, attr, None)
            for child in list(driver):
                if isinstance(child.tag, str) and child.tag == 'iothreads':
                    remove_child(driver, child)
        set_attr(disk, 'model', None)

    def _remove_emptiedcontrollers_of_type(self):
        for ctype, index in sorted(self._emptied, key=lambda ci: (ci[0], ci[1] if ci[1] is not None else -1)):
            if index is None or _built_in(ctype, index, self.root):
                continue
            ctrl = controllers_of_type(self.devices, ctype).get(index)
            if ctrl is None or (ctype == 'scsi' and ctrl.get('model') == 'virtio-scsi'):
                continue
            if not _controller_in_use(self.devices, ctype, index):
                remove_child(self.devices, ctrl)
                self.changes.append(Change('controller %s %d' % (ctype, index), 'model', ctrl.get('model') or ctype,
                                           None, 'no device uses it after the bus change'))
