#!/usr/bin/python
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_disk_tune
short_description: Apply a disk I/O policy (cache, io, discard, bus) to every libvirt domain of a host
version_added: 0.1.0
description:
  - Sets the C(cache), C(io), C(discard) and C(detect_zeroes) attributes of the disks of libvirt
    domains, and optionally moves disks to virtio-scsi or virtio-blk, in one call for all the
    matching domains of a host.
  - Each domain's inactive XML is read once, the policy is planned for all of them, every plan is
    validated, and only then are the changed domains defined. If any domain cannot take the policy,
    the module fails naming the domain, the disk and the rule, and defines nothing.
  - O(cache=auto) probes the storage as QEMU will use it (an O_DIRECT open and an aligned read of the
    image and every file of its backing chain) and picks V(none) where that works, else V(writeback).
    It never picks V(writethrough) or V(unsafe). A disk without a cache attribute runs V(writeback)
    (QEMU's default since 1.2); each disk's result shows the literal and the effective settings.
  - Whether anything changed is judged on the XML libvirt stores after its own normalisation, so a
    second run reports C(changed=false).
  - Changes reach a running domain at its next boot. The module never restarts anything; it lists
    such domains in RV(restart_required).
  - With O(xml_path), a domain XML file (a template kept in git, virt-install or vagrant-libvirt
    output) is tuned in place with the same logic and the same result keys.
author:
  - kvmio.tuning maintainers (@kvmio)
extends_documentation_fragment:
  - kvmio.tuning._libvirt
  - kvmio.tuning._libvirt.SELECTION
  - kvmio.tuning._attributes
  - kvmio.tuning._libvirt.LOCK
options:
  xml_path:
    description:
      - Tune this domain XML file instead of libvirt domains. O(uri), O(domains) and O(exclude) are
        then not used, and nothing is defined.
      - The file is rewritten atomically, keeping its mode; its original goes to O(backup_dir).
    type: path
  cache:
    description:
      - Cache mode for every tunable disk. V(auto) picks V(none) where O_DIRECT works on the disk's
        storage, else V(writeback).
      - V(none) and V(directsync) need O_DIRECT; on storage that refuses it (ZFS before 2.3, ramfs,
        many FUSE filesystems) the domain would not start, so the module fails instead.
      - V(unsafe) ignores guest flushes and needs O(allow_unsafe=true).
      - V(keep) leaves cache modes as they are.
    type: str
    choices: [none, writeback, directsync, writethrough, unsafe, auto, keep]
    default: auto
  io:
    description:
      - I/O mode. V(native) is valid only with O_DIRECT caches (V(none), V(directsync)).
      - V(auto) picks V(native) with those caches, else V(io_uring) where QEMU >= 5.0, libvirt >= 6.3
        and the kernel support it, else V(threads).
      - V(keep) leaves io modes as they are. Network disks keep their io setting.
    type: str
    choices: [native, threads, io_uring, auto, keep]
    default: auto
  discard:
    description:
      - V(unmap) passes the guest's discard (TRIM/UNMAP) to the image, which frees host space.
        It reaches the host only through a bus that passes it (virtio-scsi, SATA, IDE, and
        virtio-blk with QEMU >= 4.0); the module warns for other buses.
      - Not set on read-only disks. Unset, or V(keep), leaves discard as it is.
    type: str
    choices: [unmap, ignore, keep]
  detect_zeroes:
    description:
      - Whether QEMU turns writes of zeroes into cheaper operations. V(unmap) needs O(discard=unmap).
      - V(auto) sets V(unmap) where the final discard is V(unmap) and leaves the disk alone otherwise.
      - Unset, or V(keep), leaves detect_zeroes as it is.
    type: str
    choices: ['off', 'on', unmap, auto, keep]
  bus:
    description:
      - V(keep) leaves buses alone.
      - V(scsi) moves IDE, SATA and virtio-blk hard disks to a virtio-scsi controller (added when the
        domain has none) with new C(sdX) targets, and removes a controller that nothing uses any more
        (except ones the machine type has built in).
      - V(virtio) moves IDE and SATA hard disks to virtio-blk with C(vdX) targets.
      - CD-ROMs and floppies stay where they are. The boot disk moves only with O(convert_boot_disk=true).
    type: str
    choices: [keep, virtio, scsi]
    default: keep
  scsi_queues:
    description:
      - Number of queues of the virtio-scsi controller (multiqueue), or V(auto) for the domain's vCPU count.
      - Applied to the controller the module adds and to existing virtio-scsi controllers when O(bus=scsi).
    type: str
  convert_boot_disk:
    description:
      - Allow O(bus) to move the boot disk. A guest without the new bus's driver in its initramfs
        (and Windows guests without the virtio driver installed) will not boot afterwards.
    type: bool
    default: false
  allow_unsafe:
    description:
      - Allow O(cache=unsafe), which loses data on a host crash. For scratch or CI domains only.
    type: bool
    default: false
  migratable:
    description:
      - Refuse any cache mode other than V(none) or V(directsync) on storage that is not shared
        (libvirt refuses to live-migrate such a domain without copying its storage).
    type: bool
    default: false
  probe_storage:
    description:
      - Probe each disk's storage on this host (O_DIRECT, filesystem, backing chain).
      - When V(false), or when a disk's storage cannot be probed (a missing file, a template for
        another host), explicit settings are applied as given, V(auto) resolves to V(writeback), and
        a warning says so.
    type: bool
    default: true
  disks:
    description:
      - Per-disk overrides for every selected domain, applied in order (later entries win).
      - A O(disks[].match) without glob characters must match a disk, or the module fails.
    type: list
    elements: dict
    default: []
    suboptions:
      match:
        description: Target device (V(vda)), source path, or a glob pattern of either (V(/srv/fast/*)).
        type: str
        required: true
      cache:
        description: Cache mode for the matching disks, as O(cache).
        type: str
        choices: [none, writeback, directsync, writethrough, unsafe, auto, keep]
      io:
        description: I/O mode for the matching disks, as O(io).
        type: str
        choices: [native, threads, io_uring, auto, keep]
      discard:
        description: Discard mode for the matching disks, as O(discard).
        type: str
        choices: [unmap, ignore, keep]
      detect_zeroes:
        description: Zero detection for the matching disks, as O(detect_zeroes).
        type: str
        choices: ['off', 'on', unmap, auto, keep]
      bus:
        description: Bus for the matching disks, as O(bus).
        type: str
        choices: [keep, virtio, scsi]
      skip:
        description: Leave the matching disks entirely alone.
        type: bool
        default: false
  overrides:
    description:
      - Per-domain policy, keyed by domain name or glob pattern. Each value takes the keys
        C(cache), C(io), C(discard), C(detect_zeroes), C(bus), C(scsi_queues), C(convert_boot_disk),
        C(migratable), C(disks) (as O(disks), added after them) and C(skip) (leave the domain alone).
      - Matching entries apply in the order given, after the module-wide options.
      - A key without glob characters must name a selected domain, or the module fails.
    type: dict
    default: {}
  backup_dir:
    description:
      - Directory where each domain's inactive XML is saved (mode 0600, one file per domain and run)
        before it is redefined. No domain is defined without its backup.
    type: path
    default: /var/lib/kvmio/backups
notes:
  - "What each kind of disk gets: hard disks on files, block devices and storage-pool volumes get all
    settings; read-only disks get no O(discard)/O(detect_zeroes); shareable disks accept only
    V(none)/V(directsync) caches; network disks (rbd, iscsi, nbd, gluster) get V(writeback) for
    V(auto) and keep their io mode; CD-ROMs, floppies, C(device=lun) passthrough and non-QEMU
    drivers are left alone. Domains whose type is not qemu or kvm are left alone."
  - The embedded driver URI (V(qemu:///embed?root=DIR)) allows one process at a time per root directory.
  - Order of work, for all matching domains at once - read every inactive XML, plan, validate; write every
    backup and flush it to disk; then define. Reads and defines run four at a time over the one connection.
    If a define fails, no define that has not begun yet starts, and the error lists in RV(defined) exactly
    the domains that were defined, with RV(backups).
seealso:
  - module: kvmio.tuning.qcow2_create
  - name: libvirt domain XML, hard drives
    description: The meaning of every disk driver attribute.
    link: https://libvirt.org/formatdomain.html#hard-drives-floppy-disks-cdroms
'''

EXAMPLES = r'''
- name: Tune every domain of the host for fast, safe I/O
  kvmio.tuning.kvm_disk_tune:
    cache: auto
    io: auto
    discard: unmap
    detect_zeroes: auto

- name: Move data disks of the web servers to virtio-scsi with one queue per vCPU
  kvmio.tuning.kvm_disk_tune:
    domains: ['web*']
    bus: scsi
    scsi_queues: auto
    discard: unmap

- name: Keep a database on directsync and leave its log disk on writeback
  kvmio.tuning.kvm_disk_tune:
    domains: [db01]
    cache: directsync
    io: native
    disks:
      - match: /srv/db01-logs.qcow2
        cache: writeback
        io: threads

- name: Apply one policy with per-VM exceptions, saving backups and showing what would change
  kvmio.tuning.kvm_disk_tune:
    cache: auto
    discard: unmap
    backup_dir: /var/backups/libvirt-xml
    overrides:
      legacy-win2008:
        skip: true
      'build-*':
        cache: unsafe
  check_mode: true
  diff: true
  register: plan

- name: Tune a domain XML template kept in git
  kvmio.tuning.kvm_disk_tune:
    xml_path: /srv/templates/web.xml
    probe_storage: false
    cache: none
    io: native
'''

RETURN = r'''
changed:
  description: Whether any domain's stored XML (or the O(xml_path) file) changed.
  returned: always
  type: bool
  sample: true
domains:
  description: One entry per domain the policy was planned for.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Domain name.
      type: str
      sample: web01
    changed:
      description: Whether this domain's stored XML changed (in check mode, would change).
      type: bool
      sample: true
    restart_required:
      description: The domain is running and its new settings apply at its next boot.
      type: bool
      sample: false
    changes:
      description:
        - Each setting changed, with its old and new value and why.
        - The same shape as the C(config_changes) of M(kvmio.tuning.iothread_pin).
      type: list
      elements: dict
      sample: [{device: vda, setting: cache, before: null, after: none, reason: "auto: O_DIRECT works on ext4", live: false}]
      contains:
        device:
          description: What changes, as a user names it (V(vda), V(controller scsi 0)).
          type: str
        setting:
          description: The setting (V(cache), V(io), V(discard), V(detect_zeroes), V(bus), V(target), V(model), V(queues)).
          type: str
        before:
          description: The value before; null when unset.
          type: raw
        after:
          description: The value after; null when removed.
          type: raw
        reason:
          description: Why the collection chose it.
          type: str
        live:
          description: Whether the change also reached the running domain without a restart.
          type: bool
    disks:
      description: >-
        Every disk with its C(source), its settings before and after (C(cache), C(io), C(discard),
        C(detect_zeroes), C(bus), C(target)), the reason of each decision and, for disks left alone,
        why. The probe facts of each source are in RV(storage).
      type: list
      elements: dict
restart_required:
  description: Names of running domains whose configuration changed; they need a restart (not a reboot from inside the guest).
  returned: always
  type: list
  elements: str
  sample: [web01]
storage:
  description: >-
    Probe facts of every disk source, keyed by path (C(kind), C(fstype), C(mountpoint), C(odirect),
    C(shared), C(image_format), C(chain) - every file of the backing chain - and C(detail), why
    O_DIRECT was refused or could not be checked). Empty with O(probe_storage=false).
  returned: always
  type: dict
  sample: {/var/lib/libvirt/images/web01.qcow2: {kind: file, fstype: ext4, odirect: true, shared: false}}
backups:
  description: Files holding each redefined domain's original XML, written before the define.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/kvmio/backups/web01.20261123T101500.123456Z.xml]
defined:
  description: When a define failed, the domains this run had defined before it stopped (their backups are in RV(backups)).
  returned: on failure after the first define
  type: list
  elements: str
  sample: [web01, web02]
failed_domain:
  description: When writing a backup or a define failed, the domain it failed on.
  returned: on failure while backing up or defining
  type: str
  sample: web03
diff:
  description: Before/after XML of each changed domain.
  returned: when diff mode is on
  type: list
  elements: dict
'''

from ansible_collections.kvmio.tuning.plugins.module_utils._module import run_module
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_tune_runner import DiskTuneRun, argument_spec


def main():
    run_module(DiskTuneRun, argument_spec())


if __name__ == '__main__':
    main()
