#!/usr/bin/python
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_io_bench
short_description: Measure what each cache mode and preallocation gives on this host's storage
version_added: 0.1.0
description:
  - Creates scratch qcow2 images in O(path) (the real storage pool directory) and runs
    C(qemu-img bench) on them for every combination of O(caches), O(preallocations) and O(workloads);
    returns IOPS and MB/s of each, and the fastest safe choice.
  - Each cache mode runs with the io mode that M(kvmio.tuning.kvm_disk_tune) would set with it
    (O(kvmio.tuning.kvm_disk_tune#module:io=auto)), and only where the tuner would accept it (no
    V(none)/V(directsync) where O_DIRECT is refused); the skipped ones are listed with the reason.
  - C(qemu-img bench) runs on the host. It sees the image format and the cache mode, not what a guest
    sees (bus, iothreads, the guest's own flushes); rank setups with it, and measure a guest before
    you claim a speed-up.
  - The scratch files are removed whatever happens. The module refuses to start when the directory
    has less free space than two scratch images, and stops starting new runs after O(time_limit).
  - Changes nothing but the scratch files; check mode runs nothing.
author:
  - kvmio.tuning maintainers (@kvmio)
extends_documentation_fragment:
  - kvmio.tuning._attributes
attributes:
  diff_mode:
    support: none
    details: Nothing is changed, so there is no diff.
options:
  path:
    description: Directory to measure; scratch images are written there.
    type: path
    required: true
  size:
    description: Scratch image size (at least what O(count) requests spread 64K apart need).
    type: str
    default: 256M
  count:
    description:
      - Requests per run.
      - A run shorter than 50 ms is repeated with ten times as many requests (at most twice) so that its figures
        are measurable; writes grow only while they still fit in O(size).
    type: int
    default: 4000
  depth:
    description: Requests in flight (queue depth).
    type: int
    default: 16
  caches:
    description:
      - Cache modes to measure.
      - V(default) is a disk without a cache or io attribute, as C(virt-install) makes it (QEMU runs it
        V(writeback) with V(threads)), the baseline of RV(speedup_vs_default).
    type: list
    elements: str
    choices: [default, writethrough, writeback, none, directsync]
    default: [default, writethrough, writeback, none, directsync]
  preallocations:
    description: qcow2 preallocation modes to measure.
    type: list
    elements: str
    choices: ['off', metadata, falloc]
    default: ['off', metadata]
  workloads:
    description: V(write) (4K writes into new clusters), V(read) (4K reads), V(seqwrite) (64K sequential writes).
    type: list
    elements: str
    choices: [write, read, seqwrite]
    default: [write, read]
  time_limit:
    description: Seconds after which no new run starts (the ones not run are listed in RV(skipped)).
    type: int
    default: 300
seealso:
  - module: kvmio.tuning.kvm_io_info
'''

EXAMPLES = r'''
- name: Measure the storage pool
  kvmio.tuning.kvm_io_bench:
    path: /var/lib/libvirt/images
    count: 20000
  register: bench

- name: Show the fastest safe setup
  ansible.builtin.debug:
    var: bench.recommendation
'''

RETURN = r'''
results:
  description:
    - One entry per run with C(cache), C(io), C(baseline) (true for the V(default) disk), C(preallocation),
      C(workload), C(count), C(seconds), C(iops), C(mb_per_s).
    - C(count) is the number of requests actually measured. A run that ends in less than 50 ms (too short for
      C(qemu-img bench)'s millisecond clock, typically page-cached reads) is repeated with ten times the requests,
      at most twice.
  returned: always
  type: list
  elements: dict
recommendation:
  description: The fastest safe setup for 4K writes here, with its IOPS.
  returned: when a write workload ran
  type: dict
  sample: {cache: writeback, io: threads, preallocation: metadata, iops: 97087}
speedup_vs_default:
  description:
    - Write IOPS of the recommendation divided by those of a disk as C(virt-install) makes it (thin qcow2,
      no cache attribute, which QEMU runs V(writeback) with V(threads)).
  returned: when both were measured
  type: float
  sample: 1.4
odirect:
  description: Whether O_DIRECT works in O(path).
  returned: unless in check mode
  type: bool
filesystem:
  description: Filesystem type of O(path).
  returned: always
  type: str
skipped:
  description: Runs not made, and why (no O_DIRECT, time limit, check mode).
  returned: always
  type: list
  elements: str
'''

from ansible_collections.kvmio.tuning.plugins.module_utils._bench_runner import BenchRun, argument_spec
from ansible_collections.kvmio.tuning.plugins.module_utils._module import run_module


def main():
    run_module(BenchRun, argument_spec())


if __name__ == '__main__':
    main()
