#!/usr/bin/python
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_io_info
short_description: Audit the disk I/O setup of every libvirt domain of a host, with the fix for each finding
version_added: 0.1.0
description:
  - Reads every selected domain and reports, per disk, its literal C(cache), C(io), C(discard) and
    C(detect_zeroes), the settings QEMU really runs with (RV(domains[].disks[].effective), where a disk
    without a cache mode runs V(writeback), and the guest-visible write cache), its bus and iothread, its
    image (format, preallocation state from C(qemu-img map), backing file) and its storage
    (filesystem, whether O_DIRECT works, shared or not); per domain, its iothreads and pins.
  - For a running domain, each disk also shows the settings of its live XML (RV(domains[].disks[].live_settings))
    and what its QEMU process runs now (RV(domains[].disks[].running), read as O(read_qemu) says), with two
    findings where they differ - C(stale_live_xml), medium (a change made live, which a save/restore or a
    migration without C(--xml) would undo) and C(restart_pending), low (the configuration does not run yet).
  - Reports findings with a severity and the fix the collection would apply. The findings are the
    rule table and the advisory table that M(kvmio.tuning.kvm_disk_tune) decides with, run on the
    current settings, so the audit and the tuning never disagree. V(critical) - the domain does not
    start or cannot be defined (C(odirect_refused), C(native_without_odirect), C(io_uring_unsupported),
    C(detect_zeroes_unmap_without_discard)); V(high) - data at risk or a large measured loss
    (C(unsafe_cache), C(shareable_cached), C(writethrough), C(ide_bus), and C(unmigratable_cache), which
    only M(kvmio.tuning.kvm_disk_tune) checks, with its O(kvmio.tuning.kvm_disk_tune#module:migratable=true));
    V(medium) - a measured loss
    (C(sata_bus), C(no_iothread), C(thin_qcow2), C(pins_overlap)); V(low) - host resources
    (C(host_page_cache), C(no_discard), C(vcpus_unpinned)). The table with each code's evidence is
    in docs/disk-policy.md of the collection.
  - Changes nothing. Formerly named C(kvmio.tuning.kvm_io_facts); that name still works and is
    deprecated (it returns no C(ansible_facts)).
author:
  - kvmio.tuning maintainers (@kvmio)
extends_documentation_fragment:
  - kvmio.tuning._libvirt
  - kvmio.tuning._libvirt.SELECTION
  - kvmio.tuning._attributes
attributes:
  diff_mode:
    support: none
    details: Nothing is changed, so there is no diff.
options:
  probe_storage:
    description:
      - Probe each disk's storage (O_DIRECT, filesystem, backing chain).
      - Only regular files and block devices are read, without waiting on a FIFO; each probe is bounded
        to 10 seconds and then reports that it could not tell.
    type: bool
    default: true
  inspect_images:
    description:
      - Read each image with C(qemu-img info) and C(qemu-img map) (format, preallocation state).
      - Each image is opened as the format its domain declares (C(<driver type>), V(raw) when none is
        declared, as libvirt does), never as its bytes suggest, and a qcow2 image without its backing
        chain; a guest writes the bytes of a raw disk, a qcow2 header naming any file or server included.
      - Each image is opened once (a regular file or block device only), and C(qemu-img) reads that open
        file, not the name, so a name swapped for a FIFO or a device after the probe is never opened.
      - Each read is bounded to 30 seconds (a hung NFS server); past it, the image's facts hold the error.
    type: bool
    default: true
  read_qemu:
    description:
      - How to learn what QEMU runs for each disk of a running domain.
      - V(auto) asks QEMU (QMP C(query-named-block-nodes), C(query-block) and C(qom-list) through libvirt)
        only for domains libvirt marks tainted C(custom-monitor) - those M(kvmio.tuning.kvm_disk_tune)
        changed live, or that someone else changed through the monitor; any other domain runs exactly its
        live XML, which is reported then, without tainting it (a restored or migrated domain whose live XML
        still carries the record of an earlier live change included). With libvirt older than 7.1, which
        cannot report taints, only domains whose live XML carries a record of the running domain id.
      - V(always) asks QEMU for every running domain; libvirt then marks each tainted C(custom-monitor)
        for the life of its QEMU process.
      - V(never) reports the live XML.
    type: str
    choices: [auto, always, never]
    default: auto
seealso:
  - module: kvmio.tuning.kvm_disk_tune
'''

EXAMPLES = r'''
- name: Audit every domain of the host
  kvmio.tuning.kvm_io_info:
  register: audit

- name: Fail when a domain would not start
  ansible.builtin.assert:
    that: audit.summary.critical == 0
    fail_msg: "{{ audit.findings | selectattr('severity', 'eq', 'critical') | map(attribute='message') | list }}"
'''

RETURN = r'''
domains:
  description: >-
    Every selected domain with C(active), C(iothreads), C(vcpu_pins), C(emulator_pin),
    C(iothread_pins) and C(disks).
  returned: always
  type: list
  elements: dict
  sample:
    - name: web01
      active: true
      iothreads: 1
      vcpu_pins: {'0': '2'}
      emulator_pin: null
      iothread_pins: {}
      findings: []
      disks:
        - {target: vda, bus: virtio, device: disk, source: /var/lib/libvirt/images/web01.qcow2,
           settings: {cache: null, io: null, discard: null, detect_zeroes: null},
           effective: {cache: writeback, io: threads, discard: ignore, detect_zeroes: 'off',
                       guest_write_cache: true, odirect: false},
           iothread: '1', storage: {fstype: ext4, odirect: true}, image: {format: qcow2, preallocation: 'off'},
           findings: [host_page_cache, no_discard, thin_qcow2]}
  contains:
    disks:
      description: Every disk of the domain.
      type: list
      elements: dict
      contains:
        settings:
          description: The literal C(cache), C(io), C(discard), C(detect_zeroes) of the XML (null when unset).
          type: dict
        effective:
          description:
            - What QEMU runs with - unset values resolved to QEMU's defaults (C(cache) V(writeback) since
              QEMU 1.2, C(io) V(threads), C(discard) V(ignore), C(detect_zeroes) V(off)), C(guest_write_cache)
              (whether the guest sees a volatile write cache and so flushes) and C(odirect) (host page cache
              bypassed).
            - C(io) is null for network disks.
          type: dict
        live_settings:
          description: >-
            For a running domain, the C(cache), C(io), C(discard), C(detect_zeroes) and C(iothread) of its
            live XML (null when unset); null when the domain does not run.
          type: dict
        running:
          description:
            - For a running domain, what its QEMU runs - C(cache), C(io), C(discard), C(detect_zeroes),
              C(iothread), C(write_cache) (the device's, as QEMU started it), C(guest_write_cache) (what the
              guest runs with now, when QEMU was asked), C(direct), C(no_flush), and C(read_from) (V(qemu),
              or V(live_xml) for a domain nobody changed through the monitor, which runs exactly that).
            - C(cache) names the mode with the write cache the guest runs with - a V(writeback) disk whose
              guest turned its write cache off runs V(writethrough) (QEMU then writes through for it). That
              is the mode a migration's C(--xml) or a restore must give the disk to leave the guest as it
              is.
            - Null when the domain does not run.
          type: dict
          sample: {cache: none, io: native, discard: unmap, detect_zeroes: unmap, iothread: null, write_cache: true,
                   guest_write_cache: true, direct: true, no_flush: false, read_from: qemu}
        findings:
          description: The codes of this disk's findings.
          type: list
          elements: str
findings:
  description: Findings, most severe first.
  returned: always
  type: list
  elements: dict
  sample:
    - {code: writethrough, severity: high, subject: web01/vda, message: "cache=writethrough: every write waits for the disk",
       fix: "kvm_disk_tune cache=none io=native", fixed_by: kvm_disk_tune,
       evidence: "guest fio: 0.39x on 4K random writes, 0.43x on 1M sequential writes"}
  contains:
    code:
      description: The rule or advisory (see the description for the list).
      type: str
    severity:
      description: V(critical), V(high), V(medium) or V(low).
      type: str
    subject:
      description: C(domain) or C(domain/disk).
      type: str
    message:
      description: What is wrong, in the words M(kvmio.tuning.kvm_disk_tune) uses when it refuses the same thing.
      type: str
    fix:
      description: The module and options that fix it.
      type: str
    fixed_by:
      description: The module that fixes it.
      type: str
    evidence:
      description: Where the severity comes from (a refusal, or a measurement).
      type: str
summary:
  description: Number of findings per severity.
  returned: always
  type: dict
  sample: {critical: 0, high: 3, medium: 1, low: 4}
host:
  description: QEMU and libvirt versions, and whether io_uring is usable.
  returned: always
  type: dict
  sample: {qemu: 7.2.0, libvirt: 9.0.0, io_uring: true}
'''

from ansible_collections.kvmio.tuning.plugins.module_utils._info_runner import InfoRun, argument_spec
from ansible_collections.kvmio.tuning.plugins.module_utils._module import run_module


def main():
    run_module(InfoRun, argument_spec())


if __name__ == '__main__':
    main()
