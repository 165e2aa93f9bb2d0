# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this doc fragment is PRIVATE to the collection. It can change at any time.

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  uri:
    description:
      - The libvirt connection URI, as C(virsh -c) takes it.
      - V(qemu:///system) talks to the host's C(libvirtd) or C(virtqemud).
      - V(qemu:///embed?root=/some/dir) runs libvirt's QEMU driver inside the module process with
        its own state under that directory, no daemon needed (used by the demo and tests).
      - That driver runs as the module's user (root) and reads its configuration from the root
        (C(etc/qemu.conf) says as whom QEMU runs), so the root, every directory above it, and its
        C(etc), C(etc/qemu) and C(etc/qemu.conf) must be owned by root or the running user and not
        writable by group or others; otherwise the module fails naming the root, before libvirt opens it.
        A missing root is created with mode 0755 (QEMU, running as the user C(qemu.conf) names, must reach it).
      - If not set, the environment variable E(LIBVIRT_DEFAULT_URI) is used, then V(qemu:///system).
    type: str
    default: qemu:///system
requirements:
  - libvirt-python >= 6.0 on the managed host (Debian/Ubuntu package C(python3-libvirt))
  - lxml on the managed host (Debian/Ubuntu package C(python3-lxml))
'''

    SELECTION = r'''
options:
  domains:
    description:
      - Persistent domains to act on, by name or glob pattern (V(web*), V(db-[0-9])).
      - A name without glob characters must exist, or the module fails before changing anything.
      - A pattern that is exactly the name of a defined domain names that domain only, even when it
        holds glob characters (V(adv[1]) selects the domain C(adv[1]), not C(adv1)).
    type: list
    elements: str
    default: ['*']
  exclude:
    description:
      - Names or glob patterns of domains to leave alone, applied after O(domains); an exact name wins
        over a glob, as in O(domains).
    type: list
    elements: str
    default: []
'''

    LOCK = r'''
options:
  lock_timeout:
    description:
      - Seconds to wait for another kvmio.tuning run working on the same libvirt URI (or, for
        M(kvmio.tuning.qcow2_create), the same image) to finish. Runs on one host take turns, so no
        run overwrites another's changes; past the timeout the module fails and changes nothing.
      - The lock files live in a directory only the running user can write, checked on every run -
        C(/run/kvmio-tuning) for root, C($XDG_RUNTIME_DIR/kvmio-tuning) or C(/tmp/kvmio-tuning-UID)
        for other users (refused if another user created it).
    type: int
    default: 300
'''

    DEFINE_CHECK = r'''
options:
  define_check:
    description:
      - Before the first define of a run (and in check mode), define every changed domain's current
        and planned XML into a throwaway embedded libvirt (V(qemu:///embed?root=DIR)) in a child process.
        If libvirt refuses any planned XML, the module fails naming each refused domain and libvirt's
        message, and changes nothing (no backup, no define). The real libvirt is never touched by it.
      - The check stands for this host's QEMU driver (V(qemu:///system), V(qemu:///session),
        V(qemu:///embed?root=DIR)); with another O(uri) (a remote host, another driver) every domain is
        unchecked. The settings of the daemon's C(qemu.conf) that change what libvirt accepts (C(spice_tls),
        C(vnc_tls), C(chardev_tls), C(capability_filters) and the like) are copied into the throwaway one.
      - A domain whose current XML even the embedded driver refuses (an emulator that only the real host
        has) is not checked; nor is one whose C(<emulator>) is not a program only root can change (a
        regular file that only root owns and can write, in directories only root can change), because libvirt runs
        the emulator to probe it, as root, so the check never runs any other. Each is listed in
        RV(define_check) with the reason, and a warning says so.
      - A planned XML longer than libvirt can carry (4 MiB less 64 KiB for what libvirt adds) fails the run
        before any define, with or without the check.
      - Whatever the check says, a define that fails part-way (on a domain the check could not check, or
        with O(define_check=false)) does not leave the run half done - every domain it already defined is
        defined again from the backup written just before, and verified (RV(rolled_back)).
      - The first run on a host, and the first after QEMU or libvirt changed, take a few seconds more
        (libvirt probes QEMU's capabilities); later runs reuse the probe from a root-only (0700) cache,
        C(/var/cache/kvmio/define-check) (for other users C(~/.cache/kvmio/define-check)). A cache path
        that is a link, or that another user owns or can write, is not used.
      - Needs libvirt >= 6.1 on the managed host; with an older libvirt every domain is listed as unchecked.
      - Set V(false) only where libvirt's embedded driver cannot run on the host (for example a confined
        environment that forbids the module to start QEMU for the probe); a planned XML libvirt refuses then
        stops the run at its define, and the domains already defined are put back from their backups. With the roles, set it
        through C(module_defaults) for M(kvmio.tuning.kvm_disk_tune), M(kvmio.tuning.iothread_pin) and
        M(kvmio.tuning.domain_restore).
    type: bool
    default: true
'''
