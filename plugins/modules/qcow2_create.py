#!/usr/bin/python
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: qcow2_create
short_description: Create preallocated qcow2 images idempotently, never losing data
version_added: 0.1.0
description:
  - Creates a qcow2 image with C(qemu-img), preallocated by default (O(preallocation=metadata)),
    since a thin qcow2 image has about half the write throughput of a preallocated one.
  - An existing image is compared with the request through C(qemu-img info --output=json) and
    C(qemu-img map --output=json) (clusters without a host offset mean a thin image). An image that
    matches is left alone; one that differs is reported in RV(drift) and left alone unless
    O(resize=grow) or O(convert=true) asks for a change.
  - An image is never shrunk and never overwritten. A new image is written under a temporary name in
    the same directory and linked into place; a conversion writes a new image, checks it with
    C(qemu-img compare), keeps the original as RV(backup_file) and swaps the new one in with an
    atomic rename. A temporary file left by a killed run is removed by the next run.
  - An image a running QEMU holds open (its write lock) is never converted, resized or removed.
author:
  - kvmio.tuning maintainers (@kvmio)
extends_documentation_fragment:
  - kvmio.tuning._libvirt
  - ansible.builtin.files
  - kvmio.tuning._attributes
  - kvmio.tuning._libvirt.LOCK
options:
  path:
    description: Path of the image.
    type: path
    required: true
  state:
    description:
      - V(present) creates the image if it is missing and checks it otherwise.
      - V(absent) removes it; an image that a defined domain uses is kept unless O(force=true), and an
        image a running QEMU holds open is always kept.
    type: str
    choices: [present, absent]
    default: present
  size:
    description:
      - Virtual size, in bytes or with a binary unit (V(512M), V(10G), V(1T)). Needed to create an image.
      - A size smaller than an existing image's always fails; a larger one is reported as drift
        unless O(resize=grow).
    type: str
  preallocation:
    description:
      - V(metadata) allocates qcow2 metadata up front (cheap, most of the speed-up).
        V(falloc) and V(full) also reserve the data space (costly in disk space).
        V(off) makes a thin image.
      - An existing image with more preallocation than asked is fine; with less it is drift.
        V(falloc) and V(full) look alike to C(qemu-img map) and count as the same.
    type: str
    choices: ['off', metadata, falloc, full]
    default: metadata
  cluster_size:
    description: qcow2 cluster size, a power of two from V(512) to V(2M) (V(16K) or more with O(extended_l2)). QEMU's default is 64K.
    type: str
  lazy_refcounts:
    description: Defer refcount updates (faster allocating writes; needs a check after a crash). Needs O(compat=1.1).
    type: bool
    default: false
  extended_l2:
    description: Subcluster allocation (QEMU >= 5.2); needed for preallocation on top of a backing file.
    type: bool
    default: false
  compat:
    description: qcow2 version. V(0.10) only for very old QEMU.
    type: str
    choices: ['0.10', '1.1']
    default: '1.1'
  backing_file:
    description:
      - Create the image as an overlay of this backing file (as written into the image; relative names
        are relative to the image's directory).
      - QEMU refuses preallocation with a backing file unless O(extended_l2=true).
    type: str
  backing_format:
    description: Format of O(backing_file).
    type: str
    default: qcow2
  resize:
    description: V(grow) grows an existing image to O(size). Shrinking is never done.
    type: str
    choices: [keep, grow]
    default: keep
  convert:
    description:
      - Rewrite an existing image that differs (thin, raw, other cluster size, ...) with the requested
        settings. The guest-visible content is checked with C(qemu-img compare) before the swap and the
        original is kept as RV(backup_file).
    type: bool
    default: false
  force:
    description: With O(state=absent), remove an image even if a defined (not running) domain uses it, or if libvirt cannot be asked.
    type: bool
    default: false
  allowed_roots:
    description:
      - Directories the image must live in (after resolving symlinks). Empty allows any path.
      - A path outside them, or a symlink that leads outside, fails before anything is touched.
    type: list
    elements: path
    default: []
notes:
  - O(uri) is used only to name the domains that use the image in error messages and, with
    O(state=absent), to refuse removing a disk of a defined domain.
seealso:
  - module: kvmio.tuning.kvm_disk_tune
  - name: qemu-img documentation
    description: Image creation options and their meaning.
    link: https://www.qemu.org/docs/master/tools/qemu-img.html
'''

EXAMPLES = r'''
- name: Create a 40G image with metadata preallocation
  kvmio.tuning.qcow2_create:
    path: /var/lib/libvirt/images/web01.qcow2
    size: 40G
    owner: libvirt-qemu
    group: kvm
    mode: "0600"

- name: Rewrite a thin image as a preallocated one, keeping the original as a backup
  kvmio.tuning.qcow2_create:
    path: /var/lib/libvirt/images/legacy.qcow2
    convert: true
  register: converted

- name: Grow a data disk to 200G (never shrinks)
  kvmio.tuning.qcow2_create:
    path: /var/lib/libvirt/images/db01-data.qcow2
    size: 200G
    resize: grow

- name: Create an overlay on a golden image, preallocated with subclusters
  kvmio.tuning.qcow2_create:
    path: /var/lib/libvirt/images/ci-42.qcow2
    backing_file: /var/lib/libvirt/images/golden.qcow2
    extended_l2: true
    cluster_size: 128K

- name: Remove an image no domain uses any more
  kvmio.tuning.qcow2_create:
    path: /var/lib/libvirt/images/old.qcow2
    state: absent
'''

RETURN = r'''
path:
  description: Absolute path of the image.
  returned: always
  type: str
  sample: /var/lib/libvirt/images/web01.qcow2
action:
  description: >-
    What was done (in check mode, would be done): V(created), V(grown), V(converted), V(removed),
    V(none) (matches), or V(drift) (differs and was left alone).
  returned: always
  type: str
  sample: created
drift:
  description: Fields where the existing image differs from the request, each with C(have) and C(want).
  returned: always
  type: dict
  sample: {preallocation: {have: 'off', want: metadata}}
image:
  description: >-
    The image's facts after the run (C(format), C(virtual_size), C(actual_size), C(cluster_size),
    C(compat), C(lazy_refcounts), C(extended_l2), C(backing_file), C(backing_format),
    C(preallocation) as seen by C(qemu-img map)); null when the image does not exist.
  returned: always
  type: dict
size:
  description: Virtual size in a readable unit.
  returned: when the image exists
  type: str
  sample: 40G
filesystem:
  description: >-
    Filesystem holding the image: C(type), C(mountpoint), C(odirect) (whether an O_DIRECT open and read
    work, that is whether V(cache=none) can be used) and C(shared).
  returned: when the image exists
  type: dict
  sample: {type: ext4, mountpoint: /, odirect: true, shared: false}
backup_file:
  description: The original image, kept whole under this name after a conversion.
  returned: always (null unless an image was converted)
  type: str
  sample: /var/lib/libvirt/images/legacy.qcow2.20261123T101500Z.orig
cleaned:
  description: Temporary files of earlier, killed runs that this run removed.
  returned: always
  type: list
  elements: str
  sample: []
'''

from ansible_collections.kvmio.tuning.plugins.module_utils._module import run_module
from ansible_collections.kvmio.tuning.plugins.module_utils._qcow2_runner import Qcow2Run, argument_spec


def main():
    run_module(Qcow2Run, argument_spec(), add_file_common_args=True)


if __name__ == '__main__':
    main()
