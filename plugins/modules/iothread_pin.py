#!/usr/bin/python
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: iothread_pin
short_description: Give libvirt domains iothreads and pin vCPUs, emulator and iothreads host-wide
version_added: 0.1.0
description:
  - Adds iothreads to domains and assigns every virtio-blk disk and virtio-scsi controller to one,
    round robin. A dedicated iothread per disk multiplies random-I/O IOPS (up to 10x reported).
  - Pins vCPUs, the emulator thread and iothreads, either to explicit cpusets or with a host-wide
    allocator (V(auto)) that sees every domain of the host in one call. The allocator keeps
    O(reserved_cpus) for the host, runs emulator threads and iothreads on a housekeeping core of
    each NUMA node (off every vCPU's CPU), keeps a domain's vCPUs on one node (the one holding its
    memory when C(numatune) says so), never splits a core between two domains, and keeps pins that
    are still valid, so adding a domain never moves the others. Domains that do not fit are
    reported in RV(unplaced), never overcommitted.
  - Domains not selected by O(domains) are not changed, but the CPUs their valid pins use are taken.
  - With O(live=true), running domains get new pins and iothreads at once through libvirt's live
    calls; what cannot change live (a disk's iothread, C(numatune)) goes to the configuration and the
    domain is listed in RV(restart_required).
  - Every domain's XML is backed up before it is redefined, and a second run reports C(changed=false).
author:
  - kvmio.tuning maintainers (@kvmio)
extends_documentation_fragment:
  - kvmio.tuning._libvirt
  - kvmio.tuning._libvirt.SELECTION
  - kvmio.tuning._attributes
  - kvmio.tuning._libvirt.LOCK
  - kvmio.tuning._libvirt.DEFINE_CHECK
options:
  iothreads:
    description:
      - Number of iothreads per domain (0 to 1024), V(auto) (one per virtio-blk disk and virtio-scsi
        controller, at most O(max_iothreads)), or V(keep).
      - V(0) takes every disk and controller off its iothread.
      - Fewer iothreads than a domain has also removes the pins of the iothreads that go.
    type: str
    default: auto
  max_iothreads:
    description: Cap for O(iothreads=auto), from 1 to 1024.
    type: int
    default: 4
  disk_iothreads:
    description:
      - Iothread number per disk target, for example C(vdb) mapped to V(2), instead of round robin.
      - Each number must be one of the domain's iothreads, and each target a virtio disk of at least
        one selected domain; otherwise the module fails before changing anything.
    type: dict
    default: {}
  vcpu_pinning:
    description:
      - V(none) leaves vCPU pins alone, V(auto) lets the host-wide allocator choose, and a cpuset
        (V(2-7,^4)) pins every vCPU of every selected domain to it.
      - Every cpuset is checked against the host's CPUs (existing and online); a bad one fails
        naming the domain and the CPUs, and nothing is changed.
    type: str
    default: none
  emulator_pinning:
    description: Emulator thread pins, as O(vcpu_pinning); V(auto) uses the node's housekeeping CPUs.
    type: str
    default: none
  iothread_pinning:
    description: Iothread pins, as O(vcpu_pinning); V(auto) uses the node's housekeeping CPUs.
    type: str
    default: none
  pinning_mode:
    description:
      - V(dedicated) gives each vCPU a CPU of its own. V(shared) lets a domain's vCPUs float over
        its NUMA node's vCPU CPUs.
    type: str
    choices: [dedicated, shared]
    default: dedicated
  smt:
    description:
      - V(share) gives a domain whole cores and puts its own vCPUs on sibling threads. V(avoid) uses
        one thread per core and leaves the sibling idle.
    type: str
    choices: [share, avoid]
    default: share
  reserved_cpus:
    description: CPUs (a cpuset) the allocator never uses, for the host itself.
    type: str
  housekeeping_cpus:
    description: CPUs for emulator threads and iothreads; by default the first free core of each NUMA node.
    type: str
  numatune:
    description:
      - V(preferred) or V(strict) sets the domain's C(<numatune><memory>) to the node the allocator
        chose (applies at the next boot); V(none) leaves it alone.
    type: str
    choices: [none, preferred, strict]
    default: none
  live:
    description: Apply pins and new iothreads to running domains at once, as well as to their configuration.
    type: bool
    default: true
  fail_on_unplaced:
    description: Fail (changing nothing) instead of warning when the allocator cannot place a domain.
    type: bool
    default: false
  overrides:
    description:
      - Per-domain settings keyed by name or glob, taking C(iothreads), C(disk_iothreads),
        C(vcpu_pinning), C(emulator_pinning), C(iothread_pinning) and C(skip).
      - Every entry is validated before anything changes; an unknown setting (a typo such as C(skp))
        or a value of the wrong type fails the module naming the entry.
      - A key that is exactly the name of a defined domain applies to that domain only, even when
        it holds glob characters (C(adv[1])).
    type: dict
    default: {}
  backup_dir:
    description:
      - Directory where each domain's XML is saved (0600) before it is redefined.
      - The directory, and every directory above it, must be writable only by root (the user running
        the module); one another user owns or can write (or a link another user made) is refused,
        because M(kvmio.tuning.domain_restore) redefines domains from what it finds there and the
        files hold the domains' secrets (graphics passwords). It is created with mode 0700.
        Backup file names are cut to 255 bytes with a hash of the whole domain name.
    type: path
    default: /var/lib/kvmio/backups
  result_detail:
    description:
      - How much the result holds. V(full) returns each domain's RV(domains[].placement),
        RV(domains[].config_changes) and RV(domains[].live_changes).
      - V(summary) keeps each domain's name, whether it changed, is running and needs a restart, and its
        iothread count, with the RV(counts), RV(restart_required), RV(unplaced) and RV(backups). That is a small
        result for a fleet run, whose results AWX stores as job events for every host.
      - The C(kvmio.tuning.cpu_pinning) role uses V(summary) unless C(cpu_pinning_result_detail=full).
    type: str
    choices: [full, summary]
    default: full
seealso:
  - module: kvmio.tuning.kvm_disk_tune
  - name: libvirt CPU tuning
    description: vcpupin, emulatorpin, iothreadpin and numatune.
    link: https://libvirt.org/formatdomain.html#cpu-tuning
'''

EXAMPLES = r'''
- name: One iothread per virtio disk, host-wide pinning with two CPUs kept for the host
  kvmio.tuning.iothread_pin:
    iothreads: auto
    vcpu_pinning: auto
    emulator_pinning: auto
    iothread_pinning: auto
    reserved_cpus: "0,1"
    smt: share
  register: pins

- name: Show where each domain went
  ansible.builtin.debug:
    msg: "{{ pins.domains | items2dict(key_name='name', value_name='placement') }}"

- name: Pin a database by hand and give its data disk a second iothread
  kvmio.tuning.iothread_pin:
    domains: [db01]
    iothreads: 2
    disk_iothreads: {vdb: 2}
    vcpu_pinning: "4-7"
    emulator_pinning: "2"
    iothread_pinning: "3"
'''

RETURN = r'''
domains:
  description: The host plan, one entry per selected domain.
  returned: always
  type: list
  elements: dict
  sample: [{name: web01, changed: true, active: true, iothreads: 1, restart_required: false,
            placement: {node: 0, kept: false, vcpus: {'0': '1'}, emulator: '0', iothreads: {'1': '0'}},
            config_changes: [{device: vcpu 0, setting: pin, before: null, after: '1', reason: '', live: true}],
            live_changes: [{device: vcpu 0, setting: pin, before: 0-1, after: '1', reason: '', live: true}]}]
  contains:
    name:
      description: Domain name.
      type: str
    changed:
      description: Whether this domain's configuration or live pins changed (in check mode, would change).
      type: bool
    active:
      description: Whether the domain is running.
      type: bool
    placement:
      description: Node, vCPU, emulator and iothread cpusets chosen by the allocator, and whether the existing pins were kept; null without V(auto) pinning.
      returned: when O(result_detail=full)
      type: dict
      sample: {node: 0, kept: false, vcpus: {'0': '1', '1': '5'}, emulator: '0,4', iothreads: {'1': '0,4'}}
    iothreads:
      description: Iothread count set, or null when left alone.
      type: int
    config_changes:
      description:
        - What changed in the stored configuration, one entry per setting, in the shape of the
          C(changes) of M(kvmio.tuning.kvm_disk_tune).
        - C(live=true) marks changes that a running domain also takes now (with O(live=true)); the others
          wait for its next boot.
      returned: when O(result_detail=full)
      type: list
      elements: dict
      sample: [{device: vcpu 0, setting: pin, before: null, after: '2', reason: '', live: true},
               {device: vda, setting: iothread, before: null, after: '1', reason: '', live: false}]
      contains:
        device:
          description: What changes, as a user names it (V(vcpu 0), V(emulator), V(iothread 1), V(vda), V(domain)).
          type: str
        setting:
          description: The setting (V(pin), V(iothread), V(iothreads), V(numatune memory)).
          type: str
        before:
          description: The value before; null when unset.
          type: raw
        after:
          description: The value after; null when removed.
          type: raw
        reason:
          description: Why, when it is not what was asked (a stale pin removed, for example).
          type: str
        live:
          description: Whether the change also reaches the running domain without a restart.
          type: bool
    live_changes:
      description: What changed in the running domain through live calls (same shape as RV(domains[].config_changes)).
      returned: when O(result_detail=full)
      type: list
      elements: dict
      sample: [{device: iothread 1, setting: iothread, before: null, after: added, reason: '', live: true}]
      contains:
        device:
          description: What changes, as a user names it (V(vcpu 0), V(emulator), V(iothread 1), V(vda), V(domain)).
          type: str
        setting:
          description: The setting (V(pin), V(iothread), V(iothreads), V(numatune memory)).
          type: str
        before:
          description: The value before; null when unset.
          type: raw
        after:
          description: The value after; null when removed.
          type: raw
        reason:
          description: Why, when it is not what was asked (a stale pin removed, for example).
          type: str
        live:
          description: Whether the change also reaches the running domain without a restart.
          type: bool
    restart_required:
      description: The running domain has configuration changes that apply at its next boot only.
      type: bool
counts:
  description: >-
    How many domains were planned, changed, need a restart, were placed and not placed by the allocator,
    and how many configuration and live changes were made.
  returned: always
  type: dict
  sample: {domains: 100, changed: 100, restart_required: 0, placed: 100, unplaced: 0, config_changes: 400, live_changes: 0}
restart_required:
  description: Running domains with changes that apply at their next boot.
  returned: always
  type: list
  elements: str
  sample: [db01]
unplaced:
  description: Domains the allocator could not fit, with the reason.
  returned: always
  type: dict
  sample: {big01: '16 vCPUs do not fit on any node (free vCPU CPUs per node: 0: 6, 1: 4)'}
define_check:
  description:
    - What the define check found (see O(define_check)). C(checked) lists the domains whose planned XML libvirt
      accepted; C(unchecked) maps each domain that could not be checked to the reason.
  returned: always
  type: dict
  sample: {checked: [web01, web02], unchecked: {}}
refused:
  description: When the define check failed the run, each refused domain with libvirt's message.
  returned: when libvirt refuses a planned XML
  type: dict
  sample: {db03: "unsupported configuration: io='native' needs either no disk cache or directsync cache mode"}
oversized:
  description: >-
    When the run failed because a planned XML is longer than libvirt can define and read back (its RPC carries
    at most 4 MiB), each such domain with the planned XML's size in bytes.
  returned: when a planned XML is too long
  type: dict
  sample: {db03: 4190000}
backups:
  description: Files holding each redefined domain's original XML.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/kvmio/backups/web01.20261126T101500.123456Z.xml]
defined:
  description: >-
    When a define failed, the domains this run defined and could not put back (see RV(rolled_back)). Empty when
    everything was put back.
  returned: on failure after the first define
  type: list
  elements: str
  sample: [web01]
rolled_back:
  description: >-
    When a define failed, the domains this run had defined before it stopped and then defined again from the
    backups it had just written (each read back and verified), so they are as before the run.
  returned: on failure after the first define
  type: list
  elements: str
  sample: [web01, web02]
rollback_failed:
  description: >-
    When a define failed, the domains this run had defined that could not be put back, each with the reason
    (they also appear in RV(defined); restore them with M(kvmio.tuning.domain_restore) from RV(backups)).
  returned: on failure after the first define
  type: dict
  sample: {}
failed_domain:
  description: When writing a backup or a define failed, the domain it failed on.
  returned: on failure while backing up or defining
  type: str
  sample: web02
diff:
  description: Before/after XML of each changed domain, secrets (graphics passwords and the like) shown as C(********).
  returned: when diff mode is on
  type: list
  elements: dict
  sample: [{before_header: web01 (inactive XML, before), after_header: web01 (inactive XML, after),
            before: "<domain type='kvm'>...", after: "<domain type='kvm'>..."}]
  contains:
    before_header:
      description: Which XML the left side is.
      type: str
    after_header:
      description: Which XML the right side is.
      type: str
    before:
      description: The domain's inactive XML before the run.
      type: str
    after:
      description: The inactive XML libvirt stores after the run (in check mode, the planned one).
      type: str
'''

from ansible_collections.kvmio.tuning.plugins.module_utils._module import run_module
from ansible_collections.kvmio.tuning.plugins.module_utils._iothread_pin_runner import IothreadPinRun, argument_spec


def main():
    run_module(IothreadPinRun, argument_spec())


if __name__ == '__main__':
    main()
