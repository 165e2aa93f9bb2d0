# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Moving disks to virtio-scsi or virtio-blk in one operation on the domain XML.

A conversion rewrites the target (bus and a free name with the bus's prefix), drops the old
``<address>`` (virtio-blk: libvirt assigns a PCI slot; virtio-scsi: an explicit drive address on the
chosen controller), drops settings the new bus does not accept, and gives the disks a virtio-scsi
controller when there is none: an SCSI controller that only the moving disks used becomes it (same
index and slot), else one is added at the lowest free index. A controller the conversion emptied is
removed unless libvirt would add it back: one the machine has built in, or one below an index that
disks of its bus still use (libvirt defines every controller from 0 to the highest one a disk
names). Otherwise the stored XML would differ from the plan and the next run would change it again.

Some disks cannot move at all (``move_blocker``): libvirt refuses them on any other bus, and
dropping what ties them to their bus would change what the guest sees (a virtio disk at function 0 of
a PCI slot that other devices share: without it, the guest sees none of them). Each rule below was checked
against libvirt 9.0 (define, and a start for those it accepts): see tests/integration/test_define_safety.py.
"""

from __future__ import annotations

from ._domain_plan import Change
from ._domain_xml import machine_type, make_child, remove_child, set_attr

BUS_PREFIX = {'virtio': 'vd', 'scsi': 'sd', 'sata': 'sd', 'ide': 'hd', 'usb': 'sd', 'fdc': 'fd', 'xen': 'xvd'}
CONVERTIBLE_FROM = {'scsi': frozenset(('ide', 'sata', 'virtio')), 'virtio': frozenset(('ide', 'sata'))}
# Settings valid only on one bus, dropped when a disk leaves it (each drop is a recorded Change).
_VIRTIO_ONLY_DRIVER_ATTRS = ('iothread', 'queues', 'queue_size', 'ioeventfd', 'event_idx')
_NOT_ON_VIRTIO = ('wwn', 'vendor', 'product')
# Disk sources that are a virtio-blk device by nature: vhost-user (served by another process) and
# vhost-vdpa. libvirt: "vhostuser disk supports only virtio bus".
VIRTIO_ONLY_SOURCES = frozenset(('vhostuser', 'vhostvdpa'))
# virtio device options (libvirt's virDomainCheckVirtioOptionsAreAbsent refuses them on other buses).
# Not dropped: iommu=on is what a confidential (SEV) guest needs to reach the device at all.
VIRTIO_DEVICE_OPTIONS = ('iommu', 'ats', 'packed', 'page_per_vq')
# QEMU 7.2 refuses a virtio-scsi controller with more queues (VIRTIO_QUEUE_MAX less its 2 fixed ones);
# libvirt refuses values past 2**32 at define time and accepts the rest, which then fail at start.
MAX_SCSI_QUEUES = 1022
_DISK_NAME_PREFIXES = ('xvd', 'ubd', 'hd', 'sd', 'vd', 'fd')
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


def _set(value):
    return value not in (None, '', '0')


def move_blocker(disk, want_bus):
    """Why ``disk`` must stay on its bus instead of moving to ``want_bus`` ('' when it may move)."""
    target = disk.find('target')
    bus = target.get('bus') if target is not None else None
    source_type = disk.get('type', 'file')
    if source_type in VIRTIO_ONLY_SOURCES and want_bus != 'virtio':
        return 'a %s disk exists only as a virtio-blk device; libvirt refuses it on bus %s' % (source_type, want_bus)
    driver = disk.find('driver')
    if bus == 'virtio' and want_bus != 'virtio' and driver is not None:
        options = ['%s=%s' % (name, driver.get(name)) for name in VIRTIO_DEVICE_OPTIONS if driver.get(name)]
        if options:
            return ('its driver sets %s, which only virtio devices have (libvirt refuses them on bus %s, and '
                    'without them the guest may not reach the disk)' % (', '.join(options), want_bus))
    acpi = disk.find('acpi')
    if want_bus == 'scsi' and acpi is not None and acpi.get('index'):
        return ('it has ACPI index %s, which only PCI devices have (libvirt refuses it on bus scsi, and the guest '
                'may name the disk by it)' % acpi.get('index'))
    shared = _slot_sharers(disk) if bus == 'virtio' and want_bus != 'virtio' else []
    if shared:
        return ('it is function 0 of a multifunction PCI slot that %s also use%s; without function 0 the guest '
                'sees no other function of that slot (Linux stops scanning a slot at a missing function 0)'
                % (', '.join(shared), '' if len(shared) > 1 else 's'))
    geometry = disk.find('geometry')
    if (bus == 'ide' and want_bus != 'ide' and geometry is not None
            and all(_set(geometry.get(key)) for key in ('cyls', 'heads', 'secs'))
            and geometry.get('trans') not in (None, 'default')):
        return ("its geometry sets the BIOS translation trans=%s, which only bus ide has (libvirt refuses it on "
                "bus %s, and the guest's partitions may depend on it)" % (geometry.get('trans'), want_bus))
    return ''


def pci_slot(device):
    """((domain, bus, slot), function) of a device's own PCI address, or None without one."""
    address = device.find('address')
    if address is None or address.get('type') != 'pci':
        return None
    try:
        numbers = [int(address.get(key) or '0', 0) for key in ('domain', 'bus', 'slot', 'function')]
    except ValueError:
        return None
    return tuple(numbers[:3]), numbers[3]


def _slot_sharers(disk):
    """The other devices at the PCI slot of ``disk`` when the disk is its function 0 (moving it away
    would leave them without one), e.g. ['interface (function 1)']."""
    here = pci_slot(disk)
    devices = disk.getparent()
    if here is None or here[1] != 0 or devices is None:
        return []
    found = []
    for device in devices:
        if device is disk or not isinstance(device.tag, str):
            continue
        there = pci_slot(device)
        if there is not None and there[0] == here[0]:
            found.append('%s (function %d)' % (device.tag, there[1]))
    return found


def disk_index(dev):
    """'sda' -> 0, 'vdz' -> 25, 'hdaa' -> 26 (libvirt's virDiskNameToIndex); None if not a disk name."""
    prefix = next((p for p in _DISK_NAME_PREFIXES if dev and dev.startswith(p)), None)
    letters = dev[len(prefix):] if prefix else ''
    if not letters or not letters.isalpha() or not letters.islower() or not letters.isascii():
        return None
    index = 0
    for position, letter in enumerate(letters):
        index = (index + (1 if position else 0)) * 26 + ord(letter) - ord('a')
    return index


def implicit_scsi_address(disk):
    """(controller, unit) libvirt gives a SCSI disk without a drive address (virDomainDiskDefAssignAddress:
    7 units per controller for QEMU), or None."""
    index = disk_index(disk.find('target').get('dev') if disk.find('target') is not None else None)
    return None if index is None else (index // 7, index % 7)


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


def _controller_in_use(devices, ctype, index, ignoring=()):
    """Whether a device other than those in ``ignoring`` is attached to controller ``ctype`` ``index``."""
    for device in devices:
        if not isinstance(device.tag, str) or device in ignoring:
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


def _highest_index_in_use(devices, ctype):
    """The highest ``ctype`` controller index a disk names, or -1: libvirt adds every controller from 0 to it."""
    highest = -1
    for disk in devices.findall('disk'):
        target = disk.find('target')
        if target is not None and _CONTROLLER_TYPE_OF_BUS.get(target.get('bus')) == ctype:
            highest = max(highest, drive_controller(disk) or 0)
    return highest


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
            self._to_scsi(disks_by_bus['scsi'], taken, moving)
        for disk in disks_by_bus.get('virtio', ()):
            self._to_virtio(disk, taken)
        self._remove_emptiedcontrollers_of_type()
        return self.changes

    # --- virtio-scsi ----------------------------------------------------------------------

    def _virtio_scsi_controller(self, iothread, moving):
        scsi = controllers_of_type(self.devices, 'scsi')
        for index in sorted(scsi):
            if scsi[index].get('model') == 'virtio-scsi':
                self._give_iothread(scsi[index], index, iothread)
                return index
        attrs = {}
        if self.scsi_queues is not None:
            attrs['queues'] = self.scsi_queues
        if iothread is not None:
            attrs['iothread'] = iothread
        settings = ''.join(' %s=%s' % kv for kv in sorted(attrs.items()))
        for index in sorted(scsi):
            # An HBA that only the moving disks use becomes their virtio-scsi controller: a new one at
            # another index would leave a gap below it that libvirt fills with its default model.
            if not _controller_in_use(self.devices, 'scsi', index, ignoring=moving):
                ctrl = scsi[index]
                before = ctrl.get('model') or 'default'
                ctrl.set('model', 'virtio-scsi')
                if attrs:
                    driver = ctrl.find('driver')
                    if driver is None:
                        driver = make_child(ctrl, 'driver', index=0)
                    for key, value in attrs.items():
                        set_attr(driver, key, value)
                self.changes.append(Change('controller scsi %d' % index, 'model', before, 'virtio-scsi' + settings,
                                           'bus=scsi needs a virtio-scsi controller; only the moved disks used '
                                           'this one'))
                return index
        used = set(scsi)
        for device in self.devices.findall('disk'):
            target = device.find('target')
            if target is not None and target.get('bus') == 'scsi' and device not in moving:
                used.add(drive_controller(device))
        index = 0
        while index in used:
            index += 1
        anchor = self._insert_index('controller')
        ctrl = make_child(self.devices, 'controller', {'type': 'scsi', 'index': index, 'model': 'virtio-scsi'},
                          index=anchor)
        if attrs:
            make_child(ctrl, 'driver', attrs)
        self.changes.append(Change('controller scsi %d' % index, 'model', None, 'virtio-scsi' + settings,
                                   'bus=scsi needs a virtio-scsi controller'))
        return index

    def _give_iothread(self, ctrl, index, iothread):
        """An existing virtio-scsi controller without an iothread takes the one the moving disks ran in:
        a SCSI disk runs in its controller's iothread, and losing it costs random I/O."""
        driver = ctrl.find('driver')
        if iothread is None or (driver is not None and driver.get('iothread')):
            return
        if driver is None:
            driver = make_child(ctrl, 'driver', index=0)
        set_attr(driver, 'iothread', iothread)
        self.changes.append(Change('controller scsi %d' % index, 'iothread', None, str(iothread),
                                   'the moved disks ran in iothread %s; a SCSI disk runs in its controller\'s '
                                   'iothread' % iothread))

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

    def _to_scsi(self, disks, taken, moving):
        iothread = None
        for disk in disks:
            driver = disk.find('driver')
            if driver is not None and driver.get('iothread') and iothread is None:
                iothread = driver.get('iothread')
        if iothread is not None and self.root.find('iothreads') is None:
            iothread = None
        index = self._virtio_scsi_controller(iothread, moving)
        used_units = set()
        for device in self.devices:
            if not isinstance(device.tag, str) or device in disks:
                continue
            address = device.find('address')
            target = device.find('target')
            on_scsi = device.tag != 'disk' or (target is not None and target.get('bus') == 'scsi')
            if address is not None and address.get('type') == 'drive' and drive_controller(device) == index:
                if on_scsi:
                    used_units.add((address.get('bus', '0'), address.get('target', '0'), address.get('unit', '0')))
            elif address is None and device.tag == 'disk' and on_scsi:
                # libvirt gives it an address from its name when it defines the domain (a template).
                implicit = implicit_scsi_address(device)
                if implicit is not None and implicit[0] == index:
                    used_units.add(('0', '0', str(implicit[1])))
        unit = 0
        for disk in disks:
            while ('0', '0', str(unit)) in used_units:
                unit += 1
            target = disk.find('target')
            device = target.get('dev')
            if target.get('bus') == 'scsi' and drive_controller(disk) != index:
                # Same bus, another HBA: the change list says so, not only the diff.
                self.changes.append(Change(device, 'controller', 'scsi %s' % drive_controller(disk),
                                           'scsi %d' % index, 'bus=scsi: disks run on a virtio-scsi controller'))
            self._retarget(disk, 'scsi', taken)
            address = disk.find('address')
            if address is not None:
                remove_child(disk, address)
            make_child(disk, 'address', {'type': 'drive', 'controller': index, 'bus': 0, 'target': 0, 'unit': unit})
            used_units.add(('0', '0', str(unit)))
            self._drop_virtio_settings(disk, device)

    # --- virtio-blk -----------------------------------------------------------------------

    def _to_virtio(self, disk, taken):
        device = disk.find('target').get('dev')
        self._retarget(disk, 'virtio', taken)
        address = disk.find('address')
        if address is not None:
            remove_child(disk, address)
        for tag in _NOT_ON_VIRTIO:
            child = disk.find(tag)
            if child is not None:
                self._dropped(device, tag, (child.text or '').strip(), 'virtio')
                remove_child(disk, child)
        target = disk.find('target')
        for attr in ('removable', 'rotation_rate'):
            if target.get(attr) is not None:
                self._dropped(device, attr, target.get(attr), 'virtio')
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

    def _dropped(self, device, setting, before, bus):
        reason = 'bus %s has no %s' % (bus, setting)
        if setting in ('iothread', 'iothreads'):
            reason += "; a SCSI disk runs in its controller's iothread"
        self.changes.append(Change(device, setting, before, None, reason))

    def _drop_virtio_settings(self, disk, device):
        driver = disk.find('driver')
        if driver is not None:
            for attr in _VIRTIO_ONLY_DRIVER_ATTRS:
                if driver.get(attr) is not None:
                    self._dropped(device, attr, driver.get(attr), 'scsi')
                set_attr(driver, attr, None)
            for child in list(driver):
                if isinstance(child.tag, str) and child.tag == 'iothreads':
                    self._dropped(device, 'iothreads', 'per-queue mapping', 'scsi')
                    remove_child(driver, child)
        if disk.get('model') is not None:
            self._dropped(device, 'model', disk.get('model'), 'scsi')
        set_attr(disk, 'model', None)

    def _remove_emptiedcontrollers_of_type(self):
        for ctype, index in sorted(self._emptied, key=lambda ci: (ci[0], ci[1] if ci[1] is not None else -1)):
            if index is None or _built_in(ctype, index, self.root):
                continue
            if index < _highest_index_in_use(self.devices, ctype):
                continue        # libvirt would add it back: it defines every controller up to the highest in use
            ctrl = controllers_of_type(self.devices, ctype).get(index)
            if ctrl is None or (ctype == 'scsi' and ctrl.get('model') == 'virtio-scsi'):
                continue
            if not _controller_in_use(self.devices, ctype, index):
                remove_child(self.devices, ctrl)
                self.changes.append(Change('controller %s %d' % (ctype, index), 'model', ctrl.get('model') or ctype,
                                           None, 'no device uses it after the bus change'))
