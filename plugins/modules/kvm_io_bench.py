#!/usr/bin/python
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_io_bench
short_description: Measure disk configurations on this host's storage, in a throwaway guest or with qemu-img bench
version_added: 0.1.0
description:
  - O(mode=guest) measures what a guest gets. It boots a throwaway guest as a transient libvirt domain once per
    disk configuration (direct kernel boot of a small Linux with busybox and fio; no network, no display), gives
    it a fresh scratch disk in O(path) configured as that candidate (cache, io, bus, iothread, image
    preallocation), runs fio workloads inside it and reads fio's JSON from the serial console. It returns IOPS
    or MB/s and the p99 latency of each workload per configuration, the fastest configuration per workload, and
    ratios to a disk as C(virt-install) makes it (thin qcow2 on virtio-blk, no C(cache) or C(io) attribute, so
    QEMU runs it writeback with thread-pool I/O, no iothread).
  - The candidates are that baseline, this collection's own plan for a new disk on this storage (the cache and
    io modes M(kvmio.tuning.kvm_disk_tune) would set, as its policy code decides them, with the preallocation
    M(kvmio.tuning.qcow2_create) uses, without and with the iothread M(kvmio.tuning.iothread_pin) adds), the
    disk O(disk) of O(domain) as it is configured, the alternatives of O(alternatives), and O(candidates).
    Configurations that cannot run here are skipped with the reason the policy code gives (for example
    C(cache=none) on storage that refuses O_DIRECT, C(io=native) without O_DIRECT, C(io_uring) where QEMU or
    the kernel lack it).
  - The guest (a kernel and an initramfs) is built once from Debian packages (C(apt-get download) of
    O(kernel_package), C(busybox-static), C(fio) and the libraries fio needs that the host lacks; nothing is
    installed, nothing from a package runs on the host) into O(cache_dir), and checked against its recorded
    SHA-256 every time it is used. On hosts without a Debian package mirror, give O(kernel) and O(initrd) built
    by this module elsewhere.
  - The guest runs under KVM where the host offers it; with O(accelerator=auto) a guest that does not reach its
    init within O(kvm_boot_timeout) (some nested or paravirtual KVM hosts hang a stock kernel) makes the whole
    run fall back to TCG, and RV(accelerator) says so. Under TCG the vCPUs are emulated, so the figures rank
    I/O-bound configurations but are not absolute numbers.
  - Bounded in time (O(time_limit) for the whole run, O(runtime) per workload, a hard limit per guest) and space
    (it refuses to start when O(path) has less free space than one fully written scratch image and the guest).
    Everything it creates is removed whatever happens - the transient domain, the scratch images, its directory
    (on SIGTERM too; under C(libvirtd) the domain is also destroyed when the module's connection closes).
  - O(mode=host) (the default) runs C(qemu-img bench) on scratch qcow2 images in O(path) for every combination of
    O(caches), O(preallocations) and O(workloads) and returns the fastest safe choice. Each cache mode runs with the
    io mode M(kvmio.tuning.kvm_disk_tune) would set with it (O(kvmio.tuning.kvm_disk_tune#module:io=auto)), and only
    where the tuner would accept it (no V(none)/V(directsync) where O_DIRECT is refused; the skipped ones are
    listed with the reason). It sees the image format and the cache mode on the host, not what a guest sees (bus,
    iothreads, the guest's own flushes), so rank configurations with O(mode=guest), and measure a guest before you
    claim a speed-up.
  - Changes nothing but its scratch files and, in O(mode=guest), the guest cache; check mode runs nothing.
author:
  - kvmio.tuning maintainers (@kvmio)
extends_documentation_fragment:
  - kvmio.tuning._libvirt
  - kvmio.tuning._attributes
attributes:
  diff_mode:
    support: none
    details: Nothing is changed, so there is no diff.
options:
  mode:
    description:
      - V(guest) boots a throwaway guest per disk configuration and runs fio in it (what a guest gets).
      - V(host) runs C(qemu-img bench) on the host (storage only). O(uri) and the guest options do not apply.
    type: str
    choices: [host, guest]
    default: host
  path:
    description:
      - Directory to measure (the storage pool directory); scratch images are written there.
      - A symbolic link on the path is followed only when root or the user running the module made it, in
        directories only they can change (as for O(kvmio.tuning.qcow2_create#module:path)); a link another
        user planted fails the module, in check mode too, and nothing is written.
    type: path
    required: true
  size:
    description:
      - O(mode=host) - scratch image size (at least what O(count) requests spread 64K apart need); default V(256M).
      - O(mode=guest) - the region of the scratch disk each workload gets to itself (whole MiB); the scratch image
        is this size times the number of O(workloads). Default V(512M).
    type: str
  count:
    description:
      - O(mode=host) only. Requests per run.
      - A run shorter than 50 ms is repeated with ten times as many requests (at most twice) so that its figures
        are measurable; writes grow only while they still fit in O(size).
    type: int
    default: 4000
  depth:
    description: O(mode=host) only. Requests in flight (queue depth).
    type: int
    default: 16
  caches:
    description:
      - Cache modes to measure (O(mode=host), and O(mode=guest) with O(alternatives=matrix)).
      - V(default) is a disk without a cache or io attribute, as C(virt-install) makes it (QEMU runs it
        V(writeback) with V(threads)) - the baseline of RV(speedup_vs_default).
      - Default all five with O(mode=host); all but V(default) with O(alternatives=matrix).
    type: list
    elements: str
    choices: [default, none, writeback, directsync, writethrough]
  preallocations:
    description: qcow2 preallocation modes to measure (O(mode=host), and O(mode=guest) with O(alternatives=matrix)).
    type: list
    elements: str
    choices: ['off', metadata, falloc]
    default: ['off', metadata]
  workloads:
    description:
      - O(mode=host) - V(write) (4K writes into new clusters), V(read) (4K reads), V(seqwrite) (64K sequential
        writes); default V(write) and V(read).
      - O(mode=guest) - V(randwrite) (4K random writes, queue depth 16, libaio), V(syncwrite) (4K sequential writes,
        each followed by fsync, queue depth 1), V(randread) (4K random reads, queue depth 16, of data written
        before the guest starts), V(seqwrite) (1M sequential writes, queue depth 4); all direct I/O on the raw
        guest disk, run in the order given; default all four.
    type: list
    elements: str
    choices: [write, read, seqwrite, randwrite, syncwrite, randread]
  time_limit:
    description:
      - Seconds after which no new run starts (the ones not run are listed in RV(skipped)).
      - Default V(300) with O(mode=host), V(1800) with O(mode=guest).
    type: int
  domain:
    description:
      - O(mode=guest) only. A domain whose disk O(disk) is measured as it is configured (bus, cache, io, iothread,
        image format) on a fresh scratch image in O(path). The domain and its image are only read.
    type: str
  disk:
    description:
      - O(mode=guest) only. The disk of O(domain), by target (V(vda)) or source path; may be left out when the
        domain has a single disk.
    type: str
  alternatives:
    description:
      - O(mode=guest) only. Configurations to measure besides the baseline and the collection's plan (with and
        without iothread).
      - V(none) - nothing more.
      - V(quick) - explicit V(writethrough), the SATA bus, metadata preallocation without a cache attribute
        (six configurations with the baseline and the plan).
      - V(standard) - O(alternatives=quick) and metadata preallocation with an iothread, the plan on virtio-scsi
        without and with an iothread, V(directsync) with V(native) I/O and an iothread.
      - V(matrix) - every combination of O(caches), O(ios), O(buses), O(iothreads) and O(preallocations).
    type: str
    choices: [none, quick, standard, matrix]
    default: quick
  references:
    description:
      - O(mode=guest) only. Measure the baseline (a disk as C(virt-install) makes it) and the collection's plan,
        without and with an iothread, beside the other candidates.
      - V(false) measures only O(domain)'s disk, O(alternatives) and O(candidates); there are then no ratios to the
        baseline and no RV(collection) verdict.
    type: bool
    default: true
  candidates:
    description: O(mode=guest) only. More configurations to measure.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: A name for the results (default V(candidate1), V(candidate2), ...).
        type: str
      bus:
        description: Disk bus. V(ide) runs on the i440fx machine type, the others on q35.
        type: str
        choices: [virtio, scsi, sata, ide]
        default: virtio
      cache:
        description: Cache mode; V(default) writes no C(cache) attribute (QEMU runs writeback).
        type: str
        choices: [default, none, writeback, directsync, writethrough]
        default: default
      io:
        description: I/O mode; V(default) writes no C(io) attribute (QEMU uses its thread pool).
        type: str
        choices: [default, native, io_uring, threads]
        default: default
      iothread:
        description: Give the disk (virtio-blk) or its controller (virtio-scsi) an iothread.
        type: bool
        default: false
      preallocation:
        description: Preallocation of the scratch image.
        type: str
        choices: ['off', metadata, falloc, full]
        default: 'off'
      format:
        description: Scratch image format.
        type: str
        choices: [qcow2, raw]
        default: qcow2
  ios:
    description: O(mode=guest) with O(alternatives=matrix) only. I/O modes to combine.
    type: list
    elements: str
    choices: [default, native, io_uring, threads]
    default: [native, io_uring, threads]
  buses:
    description: O(mode=guest) with O(alternatives=matrix) only. Buses to combine.
    type: list
    elements: str
    choices: [virtio, scsi, sata, ide]
    default: [virtio]
  iothreads:
    description: O(mode=guest) with O(alternatives=matrix) only. Without and/or with an iothread.
    type: list
    elements: bool
    default: [false, true]
  runtime:
    description: O(mode=guest) only. Seconds each fio workload runs.
    type: int
    default: 10
  repetitions:
    description:
      - O(mode=guest) only. Runs of each configuration, interleaved (A B C A B C) so that a slow spell of the
        host spreads over all of them; RV(candidates) report the median and the range.
    type: int
    default: 1
  accelerator:
    description:
      - O(mode=guest) only. V(auto) uses KVM where C(/dev/kvm) and libvirt offer it and falls back to TCG when the
        guest does not boot under it within O(kvm_boot_timeout); V(kvm) fails without KVM; V(tcg) never uses KVM.
    type: str
    choices: [auto, kvm, tcg]
    default: auto
  kvm_boot_timeout:
    description: O(mode=guest) only. Seconds the guest may take under KVM to reach its init before TCG is used.
    type: int
    default: 20
  vcpus:
    description: O(mode=guest) only. vCPUs of the throwaway guest.
    type: int
    default: 2
  memory:
    description: O(mode=guest) only. Memory of the throwaway guest in MiB (the initramfs takes about 100 MiB).
    type: int
    default: 1024
  kernel:
    description:
      - O(mode=guest) only. A kernel to boot instead of building the guest; give O(initrd) with it.
      - Use a pair this module built (C(guest.kernel) and C(guest.initrd) of RV(guest), copied from a host with a package
        mirror); the initramfs carries the init that runs the benchmark and the kernel's own disk drivers.
    type: path
  initrd:
    description: O(mode=guest) only. The initramfs that goes with O(kernel).
    type: path
  kernel_package:
    description:
      - O(mode=guest) only. Debian kernel package the guest is built from (a metapackage is followed to its image).
      - The default, C(linux-image-amd64), has the SATA (AHCI) driver; C(linux-image-cloud-amd64) is a third of
        the download but has none, so SATA candidates are then skipped.
    type: str
    default: linux-image-amd64
  cache_dir:
    description:
      - O(mode=guest) only. Where the built guest is kept. Created with mode 0700; refused when it is not a
        directory owned by the user the module runs as, closed to others.
    type: path
    default: /var/cache/kvmio/guest
  refresh_guest:
    description: O(mode=guest) only. Rebuild the guest from the newest packages even when the cached one is intact.
    type: bool
    default: false
notes:
  - O(mode=guest) needs C(qemu-img) and C(qemu-io) (Debian C(qemu-utils)), QEMU and libvirt on the host, and for
    building the guest C(apt-get) and C(dpkg-deb) with access to a Debian package mirror. The guest is x86_64.
  - Figures from TCG rank configurations whose cost is I/O (the bus, the cache mode, iothreads); they do not
    predict absolute IOPS under KVM. Every result says how it was measured (RV(measured)).
seealso:
  - module: kvmio.tuning.kvm_io_info
  - module: kvmio.tuning.kvm_disk_tune
'''

EXAMPLES = r'''
- name: Measure in a guest what each disk configuration gives on the storage pool
  kvmio.tuning.kvm_io_bench:
    mode: guest
    path: /var/lib/libvirt/images
    alternatives: standard
    repetitions: 3
  register: guest_bench

- name: Show the collection's plan against a disk as virt-install makes it
  ansible.builtin.debug:
    var: guest_bench.collection

- name: Measure one domain's disk as it is configured, beside the collection's plan
  kvmio.tuning.kvm_io_bench:
    mode: guest
    path: /var/lib/libvirt/images
    domain: db1
    disk: vdb
    alternatives: none
    workloads: [randwrite, syncwrite]

- name: Compare io modes with and without an iothread, on virtio-blk and virtio-scsi
  kvmio.tuning.kvm_io_bench:
    mode: guest
    path: /var/lib/libvirt/images
    alternatives: matrix
    caches: [none, writeback]
    ios: [native, io_uring, threads]
    buses: [virtio, scsi]
    preallocations: [metadata]
    time_limit: 3600

- name: Use a guest built on another host (no package mirror here)
  kvmio.tuning.kvm_io_bench:
    mode: guest
    path: /srv/vm
    kernel: /root/kvmio-guest/linux-image-amd64.vmlinuz
    initrd: /root/kvmio-guest/linux-image-amd64.initrd

- name: Measure the storage from the host with qemu-img bench
  kvmio.tuning.kvm_io_bench:
    path: /var/lib/libvirt/images
    count: 20000
  register: bench

- name: Show the fastest safe setup qemu-img bench found
  ansible.builtin.debug:
    var: bench.recommendation
'''

RETURN = r'''
mode:
  description: The mode that ran.
  returned: always
  type: str
  sample: guest
filesystem:
  description: Filesystem type of O(path).
  returned: always
  type: str
  sample: ext4
odirect:
  description: Whether O_DIRECT works in O(path).
  returned: unless in check mode
  type: bool
  sample: true
skipped:
  description: Runs not made, and why (configurations this storage or guest cannot run, time limit, check mode).
  returned: always
  type: list
  elements: str
  sample: ["bad: io=native needs cache=none or directsync (O_DIRECT), not cache=writeback"]
results:
  description:
    - O(mode=host). One entry per run with C(cache), C(io), C(baseline) (true for the V(default) disk),
      C(preallocation), C(workload), C(count), C(seconds), C(iops), C(mb_per_s).
    - C(count) is the number of requests actually measured. A run that ends in less than 50 ms (too short for
      C(qemu-img bench)'s millisecond clock, typically page-cached reads) is repeated with ten times the requests,
      at most twice.
  returned: when O(mode=host)
  type: list
  elements: dict
  sample: [{cache: writeback, io: io_uring, baseline: false, preallocation: metadata, workload: write, count: 4000,
            seconds: 0.05, iops: 80000, mb_per_s: 327.7}]
  contains:
    cache:
      description: The cache mode run (V(writeback) for the baseline disk).
      type: str
    io:
      description: The io mode run, as M(kvmio.tuning.kvm_disk_tune) would set it with that cache mode.
      type: str
    baseline:
      description: True for the disk as C(virt-install) makes it (no cache or io attribute).
      type: bool
    preallocation:
      description: The scratch image's preallocation.
      type: str
    workload:
      description: V(write), V(read) or V(seqwrite).
      type: str
    count:
      description: Requests measured.
      type: int
    seconds:
      description: What C(qemu-img bench) reported.
      type: float
    iops:
      description: Requests per second.
      type: int
    mb_per_s:
      description: Megabytes (10^6) per second.
      type: float
recommendation:
  description:
    - O(mode=host) - the fastest setup for 4K writes of those O(kvmio.tuning.kvm_disk_tune#module:cache=auto) may
      choose, with its IOPS.
    - O(mode=guest) - the configuration with the best geometric mean, over the workloads, of its ratio to the
      fastest configuration of each workload (C(score), 1.0 when it is the fastest everywhere), described as in
      RV(candidates), with its ratios to the baseline (C(ratio)).
  returned: when a write workload ran (O(mode=host)), when every workload was measured (O(mode=guest))
  type: dict
  sample: {name: collection+iothread, bus: virtio, cache: none, io: native, iothread: true,
           preallocation: metadata, score: 0.93, ratio: {randwrite: 1.03, syncwrite: 1.45}}
speedup_vs_default:
  description:
    - O(mode=host). Write IOPS of the recommendation divided by those of a disk as C(virt-install) makes it (thin
      qcow2, no cache attribute, which QEMU runs V(writeback) with V(threads)).
  returned: when both were measured
  type: float
  sample: 1.4
workloads:
  description: O(mode=guest). The workloads run, in order.
  returned: when O(mode=guest)
  type: list
  elements: str
  sample: [randwrite, syncwrite, randread, seqwrite]
candidates:
  description:
    - O(mode=guest). Every configuration measured (or, in check mode, that would be) - C(name), C(origin)
      (V(baseline), V(collection), V(domain), V(alternative), V(user)), C(bus), C(cache) and C(io) as written
      (V(default) - no attribute), C(effective_cache) and C(effective_io) (what QEMU runs), C(iothread),
      C(preallocation), C(format), C(guest_write_cache) (what the guest's C(/sys/block/*/queue/write_cache) says),
      C(note).
    - C(results) maps each workload to C(metric) (V(iops) or V(mb_per_s)), its C(median), C(min), C(max) and
      C(values) over the repetitions, C(runs), C(spread) ((max - min) / median), C(p99_us) (median p99 completion
      latency in microseconds) and C(ratio) (median / the baseline's median).
  returned: when O(mode=guest)
  type: list
  elements: dict
  sample: [{name: virt-install, origin: baseline, bus: virtio, cache: default, io: default,
            effective_cache: writeback, effective_io: threads, iothread: false, preallocation: 'off',
            format: qcow2, guest_write_cache: write back, note: '',
            results: {randwrite: {metric: iops, median: 5486.7, min: 5390.2, max: 5601.0,
                                  values: [5486.7, 5390.2, 5601.0], runs: 3, spread: 0.038, p99_us: 13172.7,
                                  ratio: 1.0}}}]
  contains:
    name:
      description: The configuration's name.
      type: str
    origin:
      description: V(baseline), V(collection), V(domain), V(alternative) or V(user).
      type: str
    bus:
      description: V(virtio), V(scsi) or V(sata).
      type: str
    cache:
      description: The cache attribute written (V(default) - none).
      type: str
    io:
      description: The io attribute written (V(default) - none).
      type: str
    effective_cache:
      description: The cache mode QEMU runs.
      type: str
    effective_io:
      description: The io mode QEMU runs.
      type: str
    iothread:
      description: Whether the disk (or its controller) had an iothread.
      type: bool
    preallocation:
      description: The scratch image's preallocation.
      type: str
    format:
      description: The scratch image's format.
      type: str
    guest_write_cache:
      description: What the guest's C(/sys/block/*/queue/write_cache) says.
      type: str
    note:
      description: Why a configuration was skipped, or other remarks.
      type: str
    results:
      description: Per workload - C(metric), C(median), C(min), C(max), C(values), C(runs), C(spread), C(p99_us), C(ratio).
      type: dict
runs:
  description:
    - O(mode=guest). Each guest boot in the order run - C(candidate), C(repetition), C(domain) (the transient
      domain's name), C(accelerator), C(seconds) (wall clock), C(phases) (seconds to make the image, to start the
      domain, in the guest), C(since_start) (seconds from the start to the guest's first output, its init and fio),
      C(boot_seconds) and C(fio_start_seconds) (guest uptime at its init and at the first fio job), C(ended)
      (V(done) or what went wrong), C(cache_drop), C(guest_disk) (C(name), C(write_cache), C(path) - the device as
      the guest sees it), C(figures) (per workload C(iops), C(mb_per_s), C(p99_us), C(seconds), C(ios), and for
      V(syncwrite) C(sync_p99_us) - or the reason it has none), C(notes), and C(console_tail) when a run failed.
  returned: when O(mode=guest), unless in check mode
  type: list
  elements: dict
  sample: [{candidate: virt-install, repetition: 1, domain: kvmio-bench-387a9f3f2677, accelerator: tcg,
            seconds: 61.2, phases: {image: 0.5, start: 0.7, guest: 60.0},
            since_start: {first_output: 9.1, init: 9.1, fio: 9.6}, boot_seconds: 4.2, fio_start_seconds: 4.6,
            ended: done, cache_drop: done,
            guest_disk: {name: vda, write_cache: write_back, path: /sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/virtio0,
                         size: '4194304'},
            figures: {randwrite: {iops: 5486.7, mb_per_s: 22.47, p99_us: 13172.7, seconds: 10.0, ios: 54867}},
            notes: []}]
  contains:
    candidate:
      description: The configuration booted.
      type: str
    repetition:
      description: Which repetition (1 first).
      type: int
    domain:
      description: The transient domain's name.
      type: str
    accelerator:
      description: V(kvm) or V(tcg).
      type: str
    seconds:
      description: Wall clock of the boot.
      type: float
    phases:
      description: Seconds to make the image, to start the domain, in the guest.
      type: dict
    since_start:
      description: Seconds from the start to the guest's first output, its init and fio.
      type: dict
    boot_seconds:
      description: Guest uptime at its init.
      type: float
    fio_start_seconds:
      description: Guest uptime at the first fio job.
      type: float
    ended:
      description: V(done), or what went wrong.
      type: str
    cache_drop:
      description: Whether the scratch image was evicted from the host page cache before the boot.
      type: str
    guest_disk:
      description: The device as the guest sees it (C(name), C(write_cache), C(path), C(size)).
      type: dict
    figures:
      description: Per workload C(iops), C(mb_per_s), C(p99_us), C(seconds), C(ios) (C(sync_p99_us) for V(syncwrite)), or the reason there are none.
      type: dict
    notes:
      description: Remarks on the run.
      type: list
      elements: str
    console_tail:
      description: The end of the guest's console, when the run failed.
      type: str
guest:
  description:
    - O(mode=guest). The benchmark guest - C(kernel) and C(initrd) (paths; C(source) V(built), V(cache) or
      V(user)), C(kernel_version), C(buses) its drivers cover, C(sha256) of both files, C(packages) (name to
      version) it was built from, and the medians of C(boot_seconds) and C(fio_start_seconds) (guest uptime).
  returned: when O(mode=guest), unless in check mode
  type: dict
  sample: {kernel: /var/cache/kvmio/guest/linux-image-amd64.vmlinuz, initrd: /var/cache/kvmio/guest/linux-image-amd64.initrd,
           kernel_version: 6.1.0-56-amd64, buses: [virtio, scsi, sata, ide], source: cache,
           sha256: {kernel: 26f2e57c99338feaf71c46fa4babdc7e1a6c115943002d109fdb746667104f5f,
                    initrd: fac8d6393225ceefd5ba71f8077cd21407969e868bc2b2078ac3dcdda88e758d},
           packages: {fio: 3.33-3, busybox-static: '1:1.35.0-4+deb12u1+b1', linux-image-amd64: 6.1.192-2},
           boot_seconds: 4.3, fio_start_seconds: 4.7}
accelerator:
  description: O(mode=guest). The accelerator C(used) (V(kvm) or V(tcg)), the one C(requested), and why (C(reason)).
  returned: when O(mode=guest), unless in check mode
  type: dict
  sample: {used: tcg, requested: auto,
           reason: "KVM: the guest did not reach its init within 20 s (a kernel that hangs under this host's KVM); fell back to TCG"}
measured:
  description:
    - O(mode=guest). How the figures were measured - C(accelerator), C(filesystem), C(odirect), C(cache_drop),
      C(repetitions), C(order), C(runtime_seconds), C(region_bytes), C(vcpus), C(memory_mib), C(image), C(fio), and
      under TCG a C(caveat).
  returned: when O(mode=guest), unless in check mode
  type: dict
  sample: {accelerator: tcg, filesystem: ext4, odirect: true, repetitions: 3, order: interleaved (A B C A B C),
           runtime_seconds: 10, region_bytes: 536870912, vcpus: 2, memory_mib: 1024,
           cache_drop: scratch image written out and evicted from the host page cache before each boot,
           image: a fresh image per run; each workload on its own region, fio: direct=1 on the raw guest disk,
           caveat: TCG - rank I/O-bound configurations with these figures, not absolute numbers}
baseline:
  description: O(mode=guest). The name of the configuration ratios are relative to (a disk as C(virt-install) makes it).
  returned: when O(mode=guest), unless in check mode
  type: str
  sample: virt-install
fastest:
  description:
    - O(mode=guest). Per workload the fastest configuration measured - C(name), C(metric), C(median) and C(ratio)
      to the baseline. Every configuration that ran is one the policy code accepts for this storage.
  returned: when O(mode=guest), unless in check mode
  type: dict
  sample: {randwrite: {name: collection+iothread, metric: iops, median: 5630.1, ratio: 1.03}}
collection:
  description:
    - O(mode=guest). For V(collection) and V(collection+iothread), per workload - C(ratio_to_baseline),
      C(ratio_to_fastest), C(noise) (the larger of 5% and the spread of its and the baseline's repetitions),
      C(slower_than_baseline) (beyond that noise) and C(within_10_percent_of_fastest).
  returned: when O(mode=guest), unless in check mode
  type: dict
  sample: {collection: {randwrite: {ratio_to_baseline: 0.64, ratio_to_fastest: 0.62, noise: 0.05,
                                    slower_than_baseline: true, within_10_percent_of_fastest: false}}}
notes:
  description: O(mode=guest). What else a reader of the figures should know (duplicate configurations, runs that failed, policy warnings).
  returned: when O(mode=guest)
  type: list
  elements: str
  sample: ["metadata: same configuration as collection, measured once"]
'''

from ansible_collections.kvmio.tuning.plugins.module_utils._bench_runner import BenchRun, argument_spec
from ansible_collections.kvmio.tuning.plugins.module_utils._guest_bench_runner import GuestBenchRun
from ansible_collections.kvmio.tuning.plugins.module_utils._module import run_module


def _run_for_mode(module):
    return GuestBenchRun(module) if module.params['mode'] == 'guest' else BenchRun(module)


def main():
    run_module(_run_for_mode, argument_spec())


if __name__ == '__main__':
    main()
