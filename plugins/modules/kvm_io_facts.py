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
      - Each read is bounded to 30 seconds (a hung NFS server); past it, the image's facts hold the error.
    type: bool
    default: true
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
  description: >-
    Every selected domain with C(active), C(iothreads), C(vcpu_pins), C(emulator_pin),
    C(iothread_pins) and C(disks) (settings, storage, image, finding codes).
  returned: always
  type: list
  elements: dict
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
