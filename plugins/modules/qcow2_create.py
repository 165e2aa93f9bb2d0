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
  - Creates qcow2 images with C(qemu-img), preallocated by default (O(preallocation=metadata)),
    since a thin qcow2 image has about half the write throughput of a preallocated one.
  - Handles one image (O(path)) or a list (O(images)) in one call; every image is locked, read and
    planned first, and if any of them cannot be done safely the module fails before changing any.
  - An existing image is compared with the request through C(qemu-img info) and C(qemu-img map)
    (clusters without a host offset mean a thin image). An image that matches is left alone; one that
    differs is reported in RV(drift) and left alone unless O(resize=grow) or O(convert=true) asks for a
    change.
  - An image is never shrunk and never overwritten. New images are written in a private directory
    (mode 0700) beside the image and linked into place; a conversion writes a new image, checks it
    with C(qemu-img compare), keeps the original as RV(backup_file) and swaps the new one in with an
    atomic rename. A work directory left by a killed run is removed by the next run.
  - Nothing an image says is trusted. The format of an existing image is the one the domains using it
    declare (their C(<driver type>)), else O(source_format), else its first bytes. qemu-img gets every
    file as an open descriptor with its format stated, so it never opens a backing file, a URL or a
    data file that an image header names (a guest can write any header into a disk its domain
    declares raw). Only regular files and block devices are opened, and reading is bounded in time.
  - An image is never converted, grown or removed while a domain uses it, directly or anywhere in a
    backing chain. The domains of O(uri) are read once per call; backing chains are read from the
    images' headers (libvirt's inactive XML does not list them), up to libvirt's own limit of 200 files,
    with each layer's external data file, the files behind a block device (a loop device's backing file,
    through partitions, device-mapper or md devices and loops on loops), and every name of a file (a
    bind mount or a hard link is the same file). The other host files a domain boots from count as
    used too - its C(<loader>), C(<nvram>) (and the template it is made from), C(<kernel>),
    C(<initrd>), C(<dtb>), ACPI tables and fw_cfg files. See O(force) for removals.
  - When some domain's chain cannot be read to its end (a disk on a hung NFS or FUSE mount, an unreadable
    file, a chain deeper than libvirt reads), the users of every image are unknown; removals need
    O(force=true) and conversions O(source_format) or O(force=true), and the error names the disk.
    Each read is bounded in time (10 seconds, once per mount), so a dead mount never hangs the run.
  - Right before an image is renamed over or unlinked, QEMU's image locks are read again and the
    domains known to use it are asked whether they run now, so a QEMU that started meanwhile keeps it.
author:
  - kvmio.tuning maintainers (@kvmio)
extends_documentation_fragment:
  - kvmio.tuning._libvirt
  - ansible.builtin.files
  - kvmio.tuning._attributes
  - kvmio.tuning._libvirt.LOCK
options:
  path:
    description:
      - Path of the image. A symlink is followed, and the file it leads to is created, converted or grown;
        and the link stays. A symlink that leads nowhere is refused.
      - A symlink (at the image's name, or a directory on the way) is followed only when root or the user
        running the module owns it and every directory from C(/) down to it can be changed by root or
        that user only (a sticky directory such as C(/tmp) is fine); otherwise the module fails naming
        the link. A link another user planted could otherwise lead the module's chown, chmod, conversion
        or removal to any file or device.
      - Exactly one of O(path) and O(images) is needed.
    type: path
  images:
    description:
      - A list of images to handle in one call, each with the per-image options below. An option an
        entry does not set takes the value of the top-level option of the same name (so
        O(convert=true) at the top converts every listed image that differs).
      - All images are planned before any is changed; a refusal for one image fails the call and
        changes nothing. A failure while applying stops the run and says which images were done
        (C(images), C(failed_image)).
      - The same image (after resolving symlinks) may appear only once.
    type: list
    elements: dict
    suboptions:
      path:
        description: Path of the image, as O(path).
        type: path
        required: true
      state:
        description: As O(state).
        type: str
        choices: [present, absent]
      size:
        description: As O(size).
        type: str
      preallocation:
        description: As O(preallocation).
        type: str
        choices: ['off', metadata, falloc, full]
      cluster_size:
        description: As O(cluster_size).
        type: str
      lazy_refcounts:
        description: As O(lazy_refcounts).
        type: bool
      extended_l2:
        description: As O(extended_l2).
        type: bool
      compat:
        description: As O(compat).
        type: str
        choices: ['0.10', '1.1']
      backing_file:
        description: As O(backing_file).
        type: str
      backing_format:
        description: As O(backing_format).
        type: str
        choices: [qcow2, raw]
      source_format:
        description: As O(source_format).
        type: str
        choices: [auto, qcow2, raw]
      resize:
        description: As O(resize).
        type: str
        choices: [keep, grow]
      convert:
        description: As O(convert).
        type: bool
      force:
        description: As O(force).
        type: bool
      block_device_attributes:
        description: As O(block_device_attributes).
        type: bool
      owner:
        description: Owner of the image file, as O(owner).
        type: str
      group:
        description: Group of the image file, as O(group).
        type: str
      mode:
        description: Mode of the image file, as O(mode) (new images default to V(0600)).
        type: raw
  state:
    description:
      - V(present) creates the image if it is missing and checks it otherwise.
      - V(absent) removes it (and a symlink at O(path) that leads to it). A file any defined domain
        uses, as a disk or anywhere in a backing chain, is kept unless O(force=true); one a running
        domain or any QEMU process uses is always kept; a block device is never removed.
    type: str
    choices: [present, absent]
    default: present
  size:
    description:
      - Virtual size, in bytes or with a binary unit (V(512M), V(10G), V(1.5T)). Rounded up to a whole
        512-byte sector, as qemu-img does (V(1000) is 1024 bytes).
      - Needed to create an image, except an overlay (O(backing_file)), which takes its backing
        file's size when O(size) is not set.
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
      - An overlay (an image with a backing file) can be preallocated only with O(extended_l2=true),
        and then shows as V(metadata) at most; without it, an overlay is compared as V(off).
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
      - Create the image as an overlay of this backing file, recorded in the image as written here;
        a relative name is relative to the directory of O(path), as QEMU reads it.
      - The backing file and every file of its own chain must be regular files or block devices,
        local (a name QEMU would read as a protocol, such as C(nbd:...) or C(json:...), is refused),
        and inside O(allowed_roots) when that is set. A domain that reads it with another format than
        O(backing_format) makes the module fail.
      - QEMU refuses preallocation with a backing file unless O(extended_l2=true).
    type: str
  backing_format:
    description: Format of O(backing_file) (recorded in the overlay, so QEMU never guesses it).
    type: str
    choices: [qcow2, raw]
    default: qcow2
  source_format:
    description:
      - Format of an existing image at O(path). V(auto) takes the format the domains using the image
        declare, and for an image no domain uses, the file's first bytes (a qcow2 header means qcow2,
        anything else raw; a file that starts like another image format, such as VMDK, is refused).
      - Set V(raw) for a raw disk of a domain that is not defined on O(uri) (its guest may have
        written a qcow2 header into it). A value that contradicts a domain's declaration fails.
      - When the users of an image cannot all be known (libvirt cannot be asked, or a domain's chain
        could not be read to its end), a conversion needs O(source_format) (or O(force=true)), since the format
        would otherwise come from the file's own first bytes, which a guest may have written.
    type: str
    choices: [auto, qcow2, raw]
    default: auto
  resize:
    description: V(grow) grows an existing image to O(size). Shrinking is never done.
    type: str
    choices: [keep, grow]
    default: keep
  convert:
    description:
      - Rewrite an existing image that differs (thin, raw, other cluster size, ...) with the requested
        settings. The guest-visible content is checked with C(qemu-img compare) before the swap and the
        original is kept as RV(backup_file). A backing file is kept (or replaced by O(backing_file),
        which then must show the same content).
      - A backing file the image's header names is kept only when it (and every file of its chain) lies
        in the image's own directory (or below it), or inside O(allowed_roots) when that is set, since the name
        may be a guest's (a qcow2 header written into a raw disk naming a host file). Otherwise set
        O(allowed_roots) to include it, or O(backing_file) to name it yourself.
      - A relative backing name that leads to different files from the directory the image was named in
        (a symlink, as QEMU reads it) and from its real directory is refused; name the image by its real path.
      - Refused for a block device, an image a running domain uses anywhere in its backing chains, a
        raw image that a domain (or an overlay of a domain) reads as raw, a file that cannot be a raw
        disk (a size that is not a whole number of 512-byte sectors), an encrypted or corrupt image, and
        an image with an external data file.
    type: bool
    default: false
  force:
    description:
      - With O(state=absent), remove an image even if a defined (not running) domain uses it, or if
        libvirt cannot be asked.
      - With O(convert=true), convert an image although not every domain that may read it is known
        (libvirt cannot be asked, or a chain could not be read to its end); O(source_format) is the
        better way to say what the file is.
      - Never overrides a running domain, a QEMU process holding the image, or a block device.
    type: bool
    default: false
  block_device_attributes:
    description:
      - Apply O(owner), O(group) and O(mode) to a block device at O(path) too. Off by default, since a device
        node's owner and mode belong to udev and the tools that manage the device, and a request that
        would change them fails.
    type: bool
    default: false
  allowed_roots:
    description:
      - Directories the images and their backing files must live in (after resolving symlinks). Empty
        allows any path.
      - A path outside them, a symlink that leads outside, or a backing file (anywhere in the chain)
        outside them fails before anything is touched.
    type: list
    elements: path
    default: []
  result_detail:
    description:
      - With O(images), how much each entry of RV(images) holds. V(full) returns every key (the image's
        facts, filesystem, users), about 900 bytes per image.
      - V(summary) keeps C(path), C(action), C(changed), C(drift), C(backup_file) and C(cleaned) of each image,
        beside RV(counts), and Ansible's echo of the options (C(invocation)) lists only the options each entry
        of O(images) sets. That is about 200 bytes per image instead of 900, a small result for a fleet run,
        whose results AWX stores as job events for every host.
      - The C(kvmio.tuning.images) role uses V(summary) unless C(images_result_detail=full).
      - Not used with O(path).
    type: str
    choices: [full, summary]
    default: full
notes:
  - O(uri) names the libvirt whose domains' use of the images is checked. If libvirt cannot be asked,
    the module warns, reads formats from the images themselves, and refuses removals and format-changing
    conversions unless O(force=true); a running QEMU is still detected by its image locks.
  - Keep image directories writable by root only. The module stays safe in a directory others can
    write (it writes nothing by a name there and follows no symlink planted under a temporary name),
    but such a directory lets any user replace or remove the images themselves.
  - O(owner), O(group) and O(mode) are set on the open file, never by a path; new images are V(0600)
    unless O(mode) says otherwise, and a conversion keeps the original's owner, group and mode.
  - In a directory other users can write, O(owner), O(group) and O(mode) are given only to images the
    module creates there; an existing file keeps its own (the module fails if they differ, in check
    mode too), since a user may have renamed another file (another domain's root-only image) to that
    name. An existing file with more than one name (a hard link) is not grown in place there (its other
    name may be a file elsewhere that a user linked there); SELinux contexts and file attributes, which
    Ansible sets by path, are not set there at all.
  - A lock on bytes 100-299 of an image is read as "a QEMU process uses it". QEMU takes such locks on
    every image it opens, but any process can take them (a backup tool, a script), and such an image
    is then kept as if a QEMU held it. A QEMU started with C(file.locking=off) takes none; only the
    running domains libvirt reports guard against that one.
  - Each image is locked for the run (a lock file in the root-only lock directory, removed at the end).
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

- name: Create an overlay on a golden image, preallocated with subclusters (size taken from the golden image)
  kvmio.tuning.qcow2_create:
    path: /var/lib/libvirt/images/ci-42.qcow2
    backing_file: /var/lib/libvirt/images/golden.qcow2
    extended_l2: true
    cluster_size: 128K
    allowed_roots: [/var/lib/libvirt/images]

- name: Every image of a host in one call; entries fall back to the top-level options
  kvmio.tuning.qcow2_create:
    images:
      - {path: /var/lib/libvirt/images/web01.qcow2, size: 40G}
      - {path: /var/lib/libvirt/images/db01-data.qcow2, size: 200G, preallocation: falloc, resize: grow}
      - {path: /var/lib/libvirt/images/legacy.qcow2}
      - {path: /var/lib/libvirt/images/old.qcow2, state: absent}
    convert: true
    owner: libvirt-qemu
    group: kvm
    allowed_roots: [/var/lib/libvirt/images]
  register: host_images

- name: Show what was done to each image
  ansible.builtin.debug:
    msg: "{{ host_images.images | items2dict(key_name='path', value_name='action') }}"

- name: Remove an image no domain uses any more
  kvmio.tuning.qcow2_create:
    path: /var/lib/libvirt/images/old.qcow2
    state: absent
'''

RETURN = r'''
path:
  description: Absolute path of the image, as given (bytes that are not UTF-8 shown as C(\xNN)).
  returned: with O(path)
  type: str
  sample: /var/lib/libvirt/images/web01.qcow2
action:
  description: >-
    What was done, and in check mode what would be done, with the same words: V(created), V(grown),
    V(converted), V(removed), V(none) (matches, or absent already), or V(drift) (differs and was left alone).
  returned: with O(path)
  type: str
  sample: created
drift:
  description: Fields where the existing image differs from the request, each with C(have) and C(want).
  returned: with O(path)
  type: dict
  sample: {preallocation: {have: 'off', want: metadata}}
image:
  description: >-
    The image's facts after the run (in check mode, as planned): C(format), C(virtual_size), C(actual_size),
    C(cluster_size), C(compat), C(lazy_refcounts), C(extended_l2), C(backing_file), C(backing_format),
    C(preallocation) as seen by C(qemu-img map) with no backing file opened; null when the image does not
    exist (or was removed).
  returned: with O(path)
  type: dict
  sample: {format: qcow2, virtual_size: 42949672960, actual_size: 7012352, cluster_size: 65536, compat: '1.1',
           lazy_refcounts: false, extended_l2: false, backing_file: null, backing_format: null,
           preallocation: metadata}
size:
  description: Virtual size in a readable unit.
  returned: with O(path), when the image exists
  type: str
  sample: 40G
filesystem:
  description: >-
    Filesystem holding the image: C(type), C(mountpoint), C(odirect) (whether an O_DIRECT open and read
    work, that is whether V(cache=none) can be used) and C(shared).
  returned: with O(path), when the image exists
  type: dict
  sample: {type: ext4, mountpoint: /, odirect: true, shared: false}
backup_file:
  description: >-
    The original image, kept whole (a hard link of the original file) under this name after a conversion:
    C(NAME.YYYYMMDDTHHMMSSZ.orig), NAME shortened with a hash of the whole name when it would not fit in a
    file name.
  returned: with O(path) (null unless an image was converted)
  type: str
  sample: /var/lib/libvirt/images/legacy.qcow2.20261123T101500Z.orig
cleaned:
  description: Work directories of earlier, killed runs on this image that this run removed.
  returned: with O(path)
  type: list
  elements: str
  sample: [/var/lib/libvirt/images/.legacy.qcow2.kvmio-3f2a9c1e5b7d4a60.tmp]
format_source:
  description: >-
    Where the format of the existing image came from: V(domain) (the domains that use it declare it),
    V(source_format) (the option), V(header) (the file's first bytes); null when the image does not exist.
  returned: with O(path)
  type: str
  sample: domain
used_by:
  description: >-
    Domains that use the image, as a disk, anywhere in a backing chain, or as another host file they
    boot from (firmware, NVRAM, kernel...); null when the image does not exist or libvirt could not be
    asked.
  returned: with O(path)
  type: list
  elements: str
  sample: [web01]
images:
  description: >-
    One result per entry of O(images), in order, each with the keys returned for O(path) (C(path),
    C(action), C(changed), C(drift), C(image), C(size), C(filesystem), C(backup_file), C(cleaned),
    C(format_source), C(used_by)); with O(result_detail=summary) only C(path), C(action), C(changed),
    C(drift), C(backup_file) and C(cleaned). When applying fails part-way, the full results of the images
    done before the failure (and C(failed_image) names the one that failed).
  returned: with O(images)
  type: list
  elements: dict
  sample:
    - path: /var/lib/libvirt/images/web01.qcow2
      action: created
      changed: true
      drift: {}
      image: {format: qcow2, virtual_size: 42949672960, actual_size: 7012352, cluster_size: 65536, compat: '1.1',
              lazy_refcounts: false, extended_l2: false, backing_file: null, backing_format: null,
              preallocation: metadata}
      size: 40G
      filesystem: {type: ext4, mountpoint: /, odirect: true, shared: false}
      backup_file: null
      cleaned: []
      format_source: null
      used_by: null
  contains:
    path:
      description: The image, as given.
      type: str
    action:
      description: As RV(action) for O(path).
      type: str
    changed:
      description: Whether this image changed (in check mode, would change).
      type: bool
    drift:
      description: As RV(drift).
      type: dict
    image:
      description: As RV(image) (not with O(result_detail=summary)).
      type: dict
    size:
      description: As RV(size) (not with O(result_detail=summary)).
      type: str
    filesystem:
      description: As RV(filesystem) (not with O(result_detail=summary)).
      type: dict
    backup_file:
      description: As RV(backup_file).
      type: str
    cleaned:
      description: As RV(cleaned).
      type: list
      elements: str
    format_source:
      description: As RV(format_source) (not with O(result_detail=summary)).
      type: str
    used_by:
      description: As RV(used_by) (not with O(result_detail=summary)).
      type: list
      elements: str
counts:
  description: >-
    How many images the list had and changed, and how many took each action (C(created), C(converted),
    C(grown), C(removed), C(none), C(drift)).
  returned: with O(images)
  type: dict
  sample: {images: 200, changed: 200, converted: 200}
failed_image:
  description: The image whose change failed, when applying a list stopped part-way.
  returned: failure while applying O(images)
  type: str
  sample: /var/lib/libvirt/images/legacy.qcow2
'''

from ansible_collections.kvmio.tuning.plugins.module_utils._module import run_module
from ansible_collections.kvmio.tuning.plugins.module_utils._qcow2_runner import MODULE_OPTIONS, Qcow2Run, \
    argument_spec


def main():
    run_module(Qcow2Run, argument_spec(), **MODULE_OPTIONS)


if __name__ == '__main__':
    main()
