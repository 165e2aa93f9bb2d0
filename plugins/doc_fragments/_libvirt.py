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
