# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Roots for libvirt's embedded QEMU driver (qemu:///embed?root=DIR)."""

from __future__ import annotations

import os
import tempfile

# QEMU started by an embedded driver runs as the calling user (root here). With the packaged
# default (libvirt-qemu), it cannot read the root's private files, and libvirt re-probes QEMU's
# capabilities on every call because /dev/kvm access differs between the two users.
QEMU_CONF = 'user = "root"\ngroup = "root"\n'


def make_root(parent='/tmp'):
    """A fresh embedded-driver root; short, since QEMU's monitor socket path must fit 108 bytes."""
    root = tempfile.mkdtemp(prefix='kvmio-embed-', dir=parent)
    os.makedirs(os.path.join(root, 'etc'))
    with open(os.path.join(root, 'etc', 'qemu.conf'), 'w', encoding='utf-8') as handle:
        handle.write(QEMU_CONF)
    return root
