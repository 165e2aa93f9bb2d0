#!/usr/bin/python
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_io_facts
short_description: Audit the disk I/O setup of every libvirt domain of a host, with the fix for each finding
version_added: 0.1.0
description:
  - Reads every selected domain and reports, per disk, its C(cache), C(io), C(discard),
    C(detect_zeroes), bus and iothread, its image (format, preallocation state from C(qemu-img map),
    backing chain) and its storage (filesystem, whether O_DIRECT works, shared or not); per domain,
    its iothreads and pins.
  - Reports findings with a severity and the fix the collection would apply, decided by the same
    code as M(kvmio.tuning.kvm_disk_tune) - V(critical) (the domain will not start, for example
    C(cache=none) on storage without O_DIRECT, C(io=native) without O_DIRECT), V(high)
    (writethrough), V(medium) (thin qcow2, IDE/SATA bus, vCPU pins shared between domains),
    V(low) (no discard, vCPUs unpinned while iothreads are pinned).
  - For running domains, each disk also shows the settings of its live XML and those QEMU really runs
    (O(read_qemu)), with findings where they differ (C(stale_live_xml) - a live change that a save/restore
    or a migration without C(--xml) would undo - and C(restart_pending)).
  - Changes nothing.
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
    description: Probe each disk's storage (O_DIRECT, filesystem, backing chain).
    type: bool
    default: true
  inspect_images:
    description: Read each image with C(qemu-img info) and C(qemu-img map) (format, preallocation state).
    type: bool
    default: true
  read_qemu:
    description:
      - How to learn what QEMU runs for each disk of a running domain.
      - V(auto) asks QEMU (QMP C(query-named-block-nodes) and C(query-block) through libvirt) only for
        domains whose QEMU may differ from their live XML - those M(kvmio.tuning.kvm_disk_tune) changed
        live, or that libvirt marks tainted C(custom-monitor); any other domain runs exactly its live
        XML, which is reported then, without tainting it.
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
  kvmio.tuning.kvm_io_facts:
  register: audit

- name: Fail when a domain would not start
  ansible.builtin.assert:
    that: audit.summary.critical == 0
    fail_msg: "{{ audit.findings | selectattr('severity', 'eq', 'critical') | map(attribute='message') | list }}"
'''

RETURN = r'''
domains:
  description:
    - Every selected domain with C(active), C(iothreads), C(vcpu_pins), C(emulator_pin),
      C(iothread_pins) and C(disks) (settings, storage, image, finding codes).
    - Each disk of a running domain has C(live_settings) (its live XML's C(cache), C(io), C(discard),
      C(detect_zeroes), C(iothread)) and C(running) - what QEMU runs - with C(cache), C(io), C(discard),
      C(detect_zeroes), C(iothread), C(write_cache) (the device's, as QEMU started it),
      C(guest_write_cache) (what the guest runs with now, when QEMU was asked), C(direct), C(no_flush)
      and C(read_from) (V(qemu) or V(live_xml)). Both are null for domains that do not run.
  returned: always
  type: list
  elements: dict
  sample:
    - name: web01
      active: true
      disks:
        - target: vda
          settings: {cache: none, io: native, discard: unmap, detect_zeroes: unmap}
          live_settings: {cache: writeback, io: native, discard: unmap, detect_zeroes: unmap, iothread: null}
          running: {cache: none, io: native, discard: unmap, detect_zeroes: unmap, iothread: null, write_cache: true,
                    guest_write_cache: true, direct: true, no_flush: false, read_from: qemu}
          findings: [stale_live_xml]
findings:
  description: Findings, most severe first, each with C(code), C(severity), C(subject) (domain or domain/disk), C(message) and C(fix).
  returned: always
  type: list
  elements: dict
  sample:
    - {code: writethrough, severity: high, subject: web01/vda, message: "cache=default (writethrough) ...",
       fix: "kvm_disk_tune cache=none io=native"}
summary:
  description: Number of findings per severity.
  returned: always
  type: dict
  sample: {critical: 0, high: 3, medium: 1, low: 4}
host:
  description: QEMU and libvirt versions, and whether io_uring is usable.
  returned: always
  type: dict
'''

from ansible_collections.kvmio.tuning.plugins.module_utils._facts_runner import FactsRun, argument_spec
from ansible_collections.kvmio.tuning.plugins.module_utils._module import run_module


def main():
    run_module(FactsRun, argument_spec())


if __name__ == '__main__':
    main()
