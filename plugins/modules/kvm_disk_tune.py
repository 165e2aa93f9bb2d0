#!/usr/bin/python
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: kvm_disk_tune
short_description: Apply a disk I/O policy (cache, io, discard, bus) to every libvirt domain of a host
version_added: 0.1.0
description:
  - Sets the C(cache), C(io), C(discard) and C(detect_zeroes) attributes of the disks of libvirt
    domains, and optionally moves disks to virtio-scsi or virtio-blk, in one call for all the
    matching domains of a host.
  - Each domain's inactive XML is read once, the policy is planned for all of them, every plan is
    validated, and only then are the changed domains defined. If any domain cannot take the policy,
    the module fails naming the domain, the disk and the rule, and defines nothing.
  - The validation ends with the define check (O(define_check)) - every planned XML is defined into a
    throwaway embedded libvirt first, so a plan libvirt would refuse fails the run before anything
    changes, in check mode too.
  - O(cache=auto) probes the storage as QEMU will use it (an O_DIRECT open and an aligned read of the
    image and every file of its backing chain) and picks V(none) where that works, else V(writeback).
    It never picks V(writethrough) or V(unsafe). A disk without a cache attribute runs V(writeback)
    (QEMU's default since 1.2); each disk's result shows the literal and the effective settings.
  - Whether anything changed is judged on the XML libvirt stores after its own normalisation, so a
    second run reports C(changed=false).
  - By default (O(apply=config)) changes reach a running domain at its next boot. The module never
    restarts anything; it lists such domains in RV(restart_required).
  - With O(apply=live), running domains get the new C(cache), C(discard) and C(detect_zeroes) at once,
    without a restart or a pause, where the write cache the guest sees stays the same; with
    O(apply=live_or_pause), C(io) and C(iothread) changes too, through a save and restore that pauses the
    guest for seconds. See O(apply), and the guide C(docs/live-apply.md) for the risks.
  - With O(xml_path), a domain XML file (a template kept in git, virt-install or vagrant-libvirt
    output) is tuned in place with the same logic and the same result keys; the file changes only where
    a setting changes.
author:
  - kvmio.tuning maintainers (@kvmio)
extends_documentation_fragment:
  - kvmio.tuning._libvirt
  - kvmio.tuning._libvirt.SELECTION
  - kvmio.tuning._attributes
  - kvmio.tuning._libvirt.LOCK
  - kvmio.tuning._libvirt.DEFINE_CHECK
options:
  xml_path:
    description:
      - Tune this domain XML file instead of libvirt domains. O(uri) is then not used, and nothing is
        defined. O(overrides) apply to the file's domain by its C(<name>);
        a key without glob characters that names another domain fails, as in libvirt mode.
      - Only what changes is rewritten - a changed attribute value inside its quotes, a new attribute after
        the last one, a new element in the file's quote style and line ends. The XML declaration, a BOM,
        comments, CDATA, character references, quotes and CRLF line ends stay byte for byte, so a template
        kept in git gets a diff only where a setting changed. The rebuilt text is parsed again and must hold
        exactly the planned document.
      - The file must be UTF-8 without a DOCTYPE, a regular file of at most 4 MiB (what libvirt can carry). A
        FIFO, a device or a directory is refused without being opened. O(domains) and O(exclude) select
        libvirt's domains - given with O(xml_path), the module fails (use O(overrides) with C(skip) instead).
      - A symbolic link is followed to the real file, which is replaced (through a new file in its directory,
        then C(rename)) keeping its owner, group, mode and extended attributes (ACLs, SELinux labels); its
        original goes to O(backup_dir)C(/xml_path/), named after the file. Those backups are kept apart from
        the backups of libvirt's domains (the file may be another user's template) and
        M(kvmio.tuning.domain_restore) never restores them into a domain; copy one back over the file to
        undo a run. A link owned by another user may only lead to a file that user owns,
        so the module never writes where the link's owner could not. A file with several names (hard links)
        is refused, and a file edited while the module works on it is not overwritten.
      - The define check (O(define_check)) defines the new file's text in place of the old one in a
        throwaway embedded libvirt; a file for another host (another emulator) is reported unchecked, and so
        is a file whose C(<emulator>) is not a program only root can change (the check never runs it). The
        emulator is read as libvirt reads it, the whole text of the element; an C(<emulator>) holding a
        comment, a processing instruction or an element is never trusted.
    type: path
  cache:
    description:
      - Cache mode for every tunable disk. V(auto) picks V(none) where O_DIRECT works on the disk's
        storage, else V(writeback).
      - V(none) and V(directsync) need O_DIRECT; on storage that refuses it (ZFS before 2.3, ramfs,
        many FUSE filesystems) the domain would not start, so the module fails instead.
      - V(unsafe) ignores guest flushes and needs O(allow_unsafe=true).
      - V(keep) leaves cache modes as they are.
    type: str
    choices: [none, writeback, directsync, writethrough, unsafe, auto, keep]
    default: auto
  io:
    description:
      - I/O mode. V(native) is valid only with O_DIRECT caches (V(none), V(directsync)).
      - V(auto) picks V(native) with those caches, else V(io_uring) where QEMU >= 5.0, libvirt >= 6.3
        and the kernel support it, else V(threads).
      - V(keep) leaves io modes as they are. Network disks keep their io setting.
    type: str
    choices: [native, threads, io_uring, auto, keep]
    default: auto
  discard:
    description:
      - V(unmap) passes the guest's discard (TRIM/UNMAP) to the image, which frees host space.
        It reaches the host only through a bus that passes it (virtio-scsi, SATA, IDE, and
        virtio-blk with QEMU >= 4.0); the module warns for other buses.
      - Not set on read-only disks. Unset, or V(keep), leaves discard as it is.
    type: str
    choices: [unmap, ignore, keep]
  detect_zeroes:
    description:
      - Whether QEMU turns writes of zeroes into cheaper operations. V(unmap) needs O(discard=unmap).
      - V(auto) sets V(unmap) where the final discard is V(unmap) and leaves the disk alone otherwise.
      - Unset, or V(keep), leaves detect_zeroes as it is.
    type: str
    choices: ['off', 'on', unmap, auto, keep]
  bus:
    description:
      - V(keep) leaves buses alone.
      - V(scsi) moves IDE, SATA and virtio-blk hard disks to a virtio-scsi controller (added when the
        domain has none) with new C(sdX) targets, and removes a controller that nothing uses any more
        (except ones the machine type has built in).
      - V(virtio) moves IDE and SATA hard disks to virtio-blk with C(vdX) targets.
      - CD-ROMs and floppies stay where they are. The boot disk moves only with O(convert_boot_disk=true).
      - Settings the new bus does not have (C(queues), C(iothread), C(wwn), C(rotation_rate), ...) are dropped
        and listed in RV(domains[].changes).
      - A disk that cannot live on the new bus stays where it is, with a warning naming it - vhost-user and
        vhost-vdpa disks (virtio only), disks whose driver sets virtio device options (C(iommu), C(ats),
        C(packed), C(page_per_vq)), IDE disks with a BIOS C(trans)lation in C(<geometry>), and disks with
        an ACPI index (PCI only) moving to V(scsi).
    type: str
    choices: [keep, virtio, scsi]
    default: keep
  scsi_queues:
    description:
      - Number of queues of the virtio-scsi controller (multiqueue), from 1 to 1022 (QEMU's limit), or V(auto)
        for the domain's vCPU count (at most 1022).
      - Applied to the controller the module adds and to existing virtio-scsi controllers when O(bus=scsi).
    type: str
  convert_boot_disk:
    description:
      - Allow O(bus) to move the boot disk. A guest without the new bus's driver in its initramfs
        (and Windows guests without the virtio driver installed) will not boot afterwards.
    type: bool
    default: false
  allow_unsafe:
    description:
      - Allow O(cache=unsafe), which loses data on a host crash. For scratch or CI domains only.
    type: bool
    default: false
  migratable:
    description:
      - Refuse any cache mode other than V(none) or V(directsync) on storage that is not shared
        (libvirt refuses to live-migrate such a domain without copying its storage).
    type: bool
    default: false
  probe_storage:
    description:
      - Probe each disk's storage on this host (O_DIRECT, filesystem, backing chain).
      - When V(false), or when a disk's storage cannot be probed (a missing file, a template for
        another host), explicit settings are applied as given, V(auto) resolves to V(writeback), and
        a warning says so.
    type: bool
    default: true
  disks:
    description:
      - Per-disk overrides for every selected domain, applied in order (later entries win).
      - A O(disks[].match) without glob characters must match a disk, or the module fails.
    type: list
    elements: dict
    default: []
    suboptions:
      match:
        description: Target device (V(vda)), source path, or a glob pattern of either (V(/srv/fast/*)).
        type: str
        required: true
      cache:
        description: Cache mode for the matching disks, as O(cache).
        type: str
        choices: [none, writeback, directsync, writethrough, unsafe, auto, keep]
      io:
        description: I/O mode for the matching disks, as O(io).
        type: str
        choices: [native, threads, io_uring, auto, keep]
      discard:
        description: Discard mode for the matching disks, as O(discard).
        type: str
        choices: [unmap, ignore, keep]
      detect_zeroes:
        description: Zero detection for the matching disks, as O(detect_zeroes).
        type: str
        choices: ['off', 'on', unmap, auto, keep]
      bus:
        description: Bus for the matching disks, as O(bus).
        type: str
        choices: [keep, virtio, scsi]
      skip:
        description: Leave the matching disks entirely alone.
        type: bool
        default: false
  overrides:
    description:
      - Per-domain policy, keyed by domain name or glob pattern. Each value takes the keys
        C(cache), C(io), C(discard), C(detect_zeroes), C(bus), C(scsi_queues), C(convert_boot_disk),
        C(migratable), C(disks) (as O(disks), added after them) and C(skip) (leave the domain alone).
      - Matching entries apply in the order given, after the module-wide options.
      - A key without glob characters must name a selected domain, or the module fails.
    type: dict
    default: {}
  backup_dir:
    description:
      - Directory where each domain's inactive XML is saved (mode 0600, one file per domain and run)
        before it is redefined. No domain is defined without its backup.
      - The directory, and every directory above it, must be writable only by root (the user running
        the module); one another user owns or can write (or a link another user made) is refused,
        because M(kvmio.tuning.domain_restore) redefines domains from what it finds there and the
        files hold the domains' secrets (graphics passwords). It is created with mode 0700.
        Backup file names are cut to 255 bytes with a hash of the whole domain name.
    type: path
    default: /var/lib/kvmio/backups
  apply:
    description:
      - How the settings reach running domains. Idempotence is then judged on what QEMU really runs,
        so a run after a save/restore or a migration that undid a live change applies it again.
      - V(config) changes the persistent configuration only; running domains get it at their next boot.
      - V(live) also brings the running domains' disks to the C(cache), C(discard) and C(detect_zeroes)
        this run decided for them with one QMP C(blockdev-reopen) per disk chain, checked on QEMU's nodes
        afterwards. Only what the run decides goes live - a disk it skips (O(disks[].skip)) and settings it
        leaves as they are (V(keep), or an edit of the persistent configuration made by someone else) stay
        as QEMU runs them - and only where the running disk then keeps the policy's rules (a disk that is
        shareable in the running domain keeps O_DIRECT, V(unsafe) needs O(allow_unsafe)). Before each
        reopen the host writes the chain's cached data back (C(host_sync_ms)), because the reopen flushes
        what is left while the disk's I/O is drained and every vCPU of the guest waits - about a second
        per GiB of dirty page cache without that write-back, a few milliseconds with it. It never changes the
        write cache the guest sees
        (WCE, on for V(none), V(writeback) and V(unsafe), off for V(writethrough) and V(directsync)), so
        V(writethrough) to V(none) gets O_DIRECT now and the write cache at the next start
        (C(partially_applied) in RV(domains[].live)); it never leaves C(io=native) without
        O_DIRECT, never sets no-flush under a guest without a write cache, and changes nothing while a
        block job or a migration runs. C(io) and C(iothread) cannot change this way
        (C(pending) in RV(domains[].live) says so).
      - V(live_or_pause) does the same, and for a domain with C(io) or C(iothread) changes pauses it,
        saves it to O(save_dir), gives the save image the new settings (C(virsh save-image-define), which
        validates them and keeps the guest ABI) and restores it; the guest pauses for seconds
        (RV(domains[].live.pause)). Every disk of the restored domain, including disks the run leaves
        alone or that were plugged in live, gets a cache mode with the write cache its guest runs with
        (read from QEMU while the guest is paused, and checked again on the new QEMU process); where no
        mode can keep it (V(unsafe) under a guest that turned its write cache off) the domain is not
        paused, and the result says why. If the save/restore fails, the unchanged image is restored, so
        the guest runs as before; an image is never removed before its domain is seen running again.
      - Changes through QEMU's monitor leave libvirt's live XML as it was and mark the domain tainted
        (C(custom-monitor), RV(tainted)); so does the check of a restored domain. A save/restore,
        managedsave, a migration without C(--xml) or a snapshot rebuild QEMU from that live XML and undo
        them; run the module again afterwards, or restart the domain to make them permanent. Check mode,
        and a run that changes nothing on a domain (or is refused because of a job), sends no command to a
        domain libvirt does not mark tainted.
      - A domain that stops or is saved while the module works on it is reported V(not_running); its
        configuration applies at its next start.
      - Not used with O(xml_path).
    type: str
    choices: [config, live, live_or_pause]
    default: config
  save_dir:
    description:
      - Where O(apply=live_or_pause) writes a domain's save image (about the size of its memory) while it
        is paused. Created with mode 0700 when missing; refused when another user can enter it, or change
        it or a directory above it. Each image is removed once its domain runs again.
      - The filesystem must have room for the guest's memory plus 64 MiB, or the domain is not paused
        (what a reopen can do is still done). Check mode checks the same without creating anything. Nothing
        limits the pause by the guest's memory size, which it grows with (see C(docs/live-apply.md)).
    type: path
    default: /var/lib/kvmio/save
  result_detail:
    description:
      - How much the result holds. V(full) returns every domain's changes and every disk's settings
        before and after with the reasons (RV(domains[].changes), RV(domains[].disks)) and the probe facts
        of every source (RV(storage)), about 2 KB per domain.
      - V(summary) returns each domain's name, whether it changed and whether it needs a restart, the
        RV(counts), RV(restart_required) and RV(backups), and drops the per-disk detail (RV(storage) is
        empty). That is a small result for a fleet run, whose results AWX stores as job events for every host.
        Diff mode (C(--diff)) shows each changed domain's XML in both.
      - With O(apply=live) or O(apply=live_or_pause), V(summary) keeps of RV(domains[].live) its C(status),
        C(method), C(predicted), C(taint), C(pause) and C(error), and drops RV(domains[].live_changes).
      - The M(kvmio.tuning.kvm_io_info) audit reports the per-disk state of a host on its own.
      - The C(kvmio.tuning.disk_policy) role uses V(summary) unless C(disk_policy_result_detail=full).
    type: str
    choices: [full, summary]
    default: full
notes:
  - "What each kind of disk gets: hard disks on files, block devices and storage-pool volumes get all
    settings; read-only disks get no O(discard)/O(detect_zeroes); shareable disks accept only
    V(none)/V(directsync) caches; network disks (rbd, iscsi, nbd, gluster) get V(writeback) for
    V(auto) and keep their io mode; CD-ROMs, floppies, C(device=lun) passthrough and non-QEMU
    drivers are left alone. Domains whose type is not qemu or kvm are left alone."
  - The embedded driver URI (V(qemu:///embed?root=DIR)) allows one process at a time per root directory.
  - Order of work, for all matching domains at once - read every inactive XML, plan, validate, run the define
    check; write every backup and flush it to disk; then define. Reads and defines run four at a time over the one connection.
    If a define fails, no define that has not begun yet starts, and every domain this run already defined is
    defined again from the backup it wrote just before, read back and verified (RV(rolled_back)); the error says
    so, and lists in RV(defined) any domain that could not be put back, with RV(backups).
seealso:
  - module: kvmio.tuning.qcow2_create
  - module: kvmio.tuning.kvm_io_info
    description: Shows per running disk what QEMU really runs, beside the persistent and live XML.
  - name: QEMU QMP reference, blockdev-reopen
    description: The command O(apply=live) uses.
    link: https://www.qemu.org/docs/master/interop/qemu-qmp-ref.html
  - name: libvirt domain XML, hard drives
    description: The meaning of every disk driver attribute.
    link: https://libvirt.org/formatdomain.html#hard-drives-floppy-disks-cdroms
'''

EXAMPLES = r'''
- name: Tune every domain of the host for fast, safe I/O
  kvmio.tuning.kvm_disk_tune:
    cache: auto
    io: auto
    discard: unmap
    detect_zeroes: auto

- name: Move data disks of the web servers to virtio-scsi with one queue per vCPU
  kvmio.tuning.kvm_disk_tune:
    domains: ['web*']
    bus: scsi
    scsi_queues: auto
    discard: unmap

- name: Keep a database on directsync and leave its log disk on writeback
  kvmio.tuning.kvm_disk_tune:
    domains: [db01]
    cache: directsync
    io: native
    disks:
      - match: /srv/db01-logs.qcow2
        cache: writeback
        io: threads

- name: Apply one policy with per-VM exceptions, saving backups and showing what would change
  kvmio.tuning.kvm_disk_tune:
    cache: auto
    discard: unmap
    backup_dir: /var/backups/libvirt-xml
    overrides:
      legacy-win2008:
        skip: true
      'build-*':
        cache: unsafe
  check_mode: true
  diff: true
  register: plan

- name: Give running domains cache=none at once, without a restart
  kvmio.tuning.kvm_disk_tune:
    cache: auto
    discard: unmap
    detect_zeroes: auto
    apply: live
  register: tuned

- name: Say what still waits for a restart, and which domains carry monitor changes
  ansible.builtin.debug:
    msg: "restart: {{ tuned.restart_required }}; live XML stale until restart: {{ tuned.tainted }}"

- name: Also change io on running domains, pausing each for seconds
  kvmio.tuning.kvm_disk_tune:
    domains: ['batch-*']
    cache: none
    io: native
    apply: live_or_pause
    save_dir: /var/lib/kvmio/save

- name: Tune a domain XML template kept in git
  kvmio.tuning.kvm_disk_tune:
    xml_path: /srv/templates/web.xml
    probe_storage: false
    cache: none
    io: native
'''

RETURN = r'''
changed:
  description: Whether any domain's stored XML (or the O(xml_path) file) changed, or a running domain's QEMU did.
  returned: always
  type: bool
  sample: true
domains:
  description: One entry per domain the policy was planned for.
  returned: always
  type: list
  elements: dict
  sample: [{name: web01, changed: true, restart_required: false,
            changes: [{device: vda, setting: cache, before: null, after: none, reason: "auto: O_DIRECT works on ext4",
                       live: false}],
            disks: [{target: vda, device: disk, source: /var/lib/libvirt/images/web01.qcow2, skipped: '',
                     before: {cache: null, io: null, discard: null, detect_zeroes: null, bus: virtio, target: vda,
                              effective: {cache: writeback, io: threads, discard: ignore, detect_zeroes: 'off',
                                          guest_write_cache: true, odirect: false}},
                     after: {cache: none, io: native, discard: null, detect_zeroes: null, bus: virtio, target: vda,
                             effective: {cache: none, io: native, discard: ignore, detect_zeroes: 'off',
                                         guest_write_cache: true, odirect: true}},
                     reasons: {cache: "auto: O_DIRECT works on ext4", io: "auto: cache=none uses O_DIRECT, so Linux native AIO works"}}]}]
  contains:
    name:
      description: Domain name.
      type: str
      sample: web01
    changed:
      description: Whether this domain's stored XML or its running QEMU changed (in check mode, would change).
      type: bool
      sample: true
    restart_required:
      description:
        - The domain is running and some of its new settings apply at its next boot.
        - With O(apply=live) or O(apply=live_or_pause), true only for what the running QEMU still lacks.
      type: bool
      sample: false
    changes:
      description:
        - Each setting changed, with its old and new value and why.
        - The same shape as the C(config_changes) of M(kvmio.tuning.iothread_pin).
      returned: when O(result_detail=full)
      type: list
      elements: dict
      sample: [{device: vda, setting: cache, before: null, after: none, reason: "auto: O_DIRECT works on ext4", live: false}]
      contains:
        device:
          description: What changes, as a user names it (V(vda), V(controller scsi 0)).
          type: str
        setting:
          description: The setting (V(cache), V(io), V(discard), V(detect_zeroes), V(bus), V(target), V(model), V(queues)).
          type: str
        before:
          description: The value before; null when unset.
          type: raw
        after:
          description: The value after; null when removed.
          type: raw
        reason:
          description: Why the collection chose it.
          type: str
        live:
          description: Whether the change also reached the running domain without a restart.
          type: bool
    disks:
      description: >-
        Every disk with its C(source), its settings before and after (C(cache), C(io), C(discard),
        C(detect_zeroes), C(bus), C(target)), the reason of each decision and, for disks left alone,
        why. The probe facts of each source are in RV(storage).
      returned: when O(result_detail=full)
      type: list
      elements: dict
      contains:
        target:
          description: The disk's target device (after a bus change, the new one).
          type: str
        device:
          description: V(disk), V(cdrom), V(floppy) or V(lun).
          type: str
        source:
          description: The image path, block device, or C(protocol:name) of a network disk.
          type: str
        skipped:
          description: Why the disk was left alone entirely, or empty.
          type: str
        before:
          description:
            - The literal C(cache), C(io), C(discard), C(detect_zeroes), C(bus) and C(target) before (null when unset),
              and C(effective) - what QEMU runs with them (a disk without a cache mode runs V(writeback) on QEMU 1.2
              and later), C(guest_write_cache) (whether the guest sees a volatile write cache) and C(odirect).
          type: dict
        after:
          description: The same, after the run (in check mode, as planned).
          type: dict
        reasons:
          description: Why each setting was chosen.
          type: dict
    live:
      description:
        - What O(apply) did to the running domain (in check mode, would do, predicted from the live XML
          unless the domain already carries monitor changes).
        - With O(result_detail=summary), only C(status), C(method), C(predicted), C(taint), C(pause) and C(error).
      returned: for running domains, when O(apply) is V(live) or V(live_or_pause)
      type: dict
      contains:
        status:
          description: >-
            V(in_sync) (QEMU already runs what the run decided), V(applied_live), V(partially_applied)
            (see C(pending)), V(restart_required) (nothing could be applied live) or V(not_running) (the
            domain stopped, or was saved, while the module worked on it; nothing was applied live).
          type: str
          sample: applied_live
        method:
          description: V(blockdev-reopen), V(save-restore), or null when nothing was changed.
          type: str
          sample: blockdev-reopen
        predicted:
          description: Check mode - this says what would be done.
          type: bool
        read_from:
          description: >-
            Where QEMU's state was read - V(qemu) (QMP C(query-named-block-nodes) and C(query-block)) or
            V(live_xml) (a domain without monitor changes runs exactly its live XML; read from there, it
            is not tainted).
          type: str
          sample: qemu
        taint:
          description: V(custom-monitor) when libvirt marks the running QEMU process as changed through its monitor, else null.
          type: str
          sample: custom-monitor
        pause:
          description: >-
            For a save/restore, how long the guest was stopped, in seconds, measured from the moment the
            module paused it to the restore's return, or to its resume when the save failed
            (C(pause_seconds)), with C(save_seconds) (from the pause to the end of the save),
            C(define_seconds), C(restore_seconds) and the save image's size C(image_bytes).
          type: dict
          sample: {pause_seconds: 2.41, save_seconds: 2.04, define_seconds: 0.002, restore_seconds: 0.36, image_bytes: 792291}
        error:
          description: >-
            Why a save/restore was not done, or failed and restored the guest unchanged; why nothing was done
            on a domain that is not running; what a check of the restored domain found.
          type: str
        write_cache_kept:
          description: >-
            The disks a save/restore gave another cache mode than their live XML had, to keep the write
            cache their guest runs with - C(target), C(cache) (the mode given) and C(was).
          type: list
          elements: dict
          sample: [{target: vdb, cache: writethrough, was: writeback}]
          contains:
            target:
              description: The disk.
              type: str
            cache:
              description: The cache mode it was given.
              type: str
            was:
              description: The cache mode its live XML had.
              type: str
        pending:
          description: Changes of the domain other than disk settings (controllers), which wait for the next boot.
          type: list
          elements: dict
          sample: [{device: controller scsi 0, setting: model, before: null, after: virtio-scsi, reason: bus=scsi,
                    live: false}]
          contains:
            device:
              description: As in RV(domains[].changes).
              type: str
            setting:
              description: As in RV(domains[].changes).
              type: str
            before:
              description: As in RV(domains[].changes).
              type: raw
            after:
              description: As in RV(domains[].changes).
              type: raw
        disks:
          description: >-
            Per hard disk the run tunes - C(target), C(status) (as above), C(method), C(running) (what QEMU
            ran before, as C(cache), C(io), C(discard), C(detect_zeroes), C(iothread); C(cache) with the
            write cache the guest runs with), C(now), C(wanted) (what the run brings it to - the
            configuration for the settings it decided, what QEMU runs for the others), C(applied) (the
            settings changed), C(pending) (each setting still waiting for a restart, with C(running),
            C(wanted) and C(why)), C(reopen_ms), C(host_sync_ms) (the host's write-back of the chain before
            the reopen) and C(error).
          type: list
          elements: dict
          sample:
            - target: vda
              status: partially_applied
              method: blockdev-reopen
              running: {cache: writethrough, io: native, discard: unmap, detect_zeroes: unmap, iothread: null}
              now: {cache: directsync, io: native, discard: unmap, detect_zeroes: unmap, iothread: null}
              applied: [cache]
              pending:
                - setting: cache
                  running: directsync
                  wanted: none
                  why: "the guest's write cache (WCE) cannot change while it runs: it runs as directsync until a restart"
              reopen_ms: 3.2
              host_sync_ms: 0.4
          contains:
            target:
              description: The disk's target device.
              type: str
            status:
              description: As the domain's C(status), for this disk.
              type: str
            method:
              description: V(blockdev-reopen), V(save-restore), or null.
              type: str
            running:
              description: What QEMU ran before.
              type: dict
            now:
              description: What QEMU runs now.
              type: dict
            wanted:
              description: What the run brings it to.
              type: dict
            applied:
              description: The settings changed.
              type: list
              elements: str
            pending:
              description: Each setting still waiting for a restart.
              type: list
              elements: dict
              contains:
                setting:
                  description: The setting.
                  type: str
                running:
                  description: What QEMU runs.
                  type: str
                wanted:
                  description: What the configuration says.
                  type: str
                why:
                  description: Why it could not be applied live.
                  type: str
            reopen_ms:
              description: How long the reopen took.
              type: float
            host_sync_ms:
              description: The host's write-back of the chain before the reopen.
              type: float
            error:
              description: What went wrong on this disk, if anything.
              type: str
    live_changes:
      description: Each setting changed in the running QEMU, in the shape of RV(domains[].changes), with C(live=true).
      returned: for running domains, when O(apply) is V(live) or V(live_or_pause) and O(result_detail=full)
      type: list
      elements: dict
      sample: [{device: vda, setting: cache, before: writeback, after: none, reason: "blockdev-reopen, without a restart", live: true}]
      contains:
        device:
          description: As in RV(domains[].changes).
          type: str
        setting:
          description: As in RV(domains[].changes).
          type: str
        before:
          description: What QEMU ran.
          type: raw
        after:
          description: What QEMU runs now.
          type: raw
        reason:
          description: How it was applied.
          type: str
        live:
          description: Always true here.
          type: bool
counts:
  description: How many domains were planned, changed and need a restart, their disks, and the settings changed.
  returned: always
  type: dict
  sample: {domains: 100, changed: 100, restart_required: 3, disks: 200, changes: 800}
restart_required:
  description:
    - Names of running domains whose configuration changed; they need a restart (not a reboot from inside the guest).
    - With O(apply=live) or O(apply=live_or_pause), the running domains whose QEMU still lacks some configured setting.
  returned: always
  type: list
  elements: str
  sample: [web01]
tainted:
  description: >-
    Running domains marked C(custom-monitor) by libvirt: their QEMU runs settings their live XML does not
    say (see O(apply) for what undoes them).
  returned: when O(apply) is V(live) or V(live_or_pause)
  type: list
  elements: str
  sample: [web01]
storage:
  description: >-
    Probe facts of every disk source, keyed by path (C(kind), C(fstype), C(mountpoint), C(odirect),
    C(shared), C(image_format), C(chain) - every file of the backing chain - and C(detail), why
    O_DIRECT was refused or could not be checked). Empty with O(probe_storage=false) or O(result_detail=summary).
  returned: always
  type: dict
  sample: {/var/lib/libvirt/images/web01.qcow2: {kind: file, fstype: ext4, odirect: true, shared: false}}
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
  description:
    - Files holding each redefined domain's original XML, written before the define.
    - With O(xml_path), the file's original text, under O(backup_dir)C(/xml_path/).
  returned: always
  type: list
  elements: str
  sample: [/var/lib/kvmio/backups/web01.20261123T101500.123456Z.xml]
defined:
  description: >-
    When a define failed, the domains this run defined and could not put back (see RV(rolled_back)): they hold
    the new XML; their backups are in RV(backups). Empty when everything was put back. When a live apply
    failed, every domain this run defined (the configurations were stored before it; nothing is put back).
  returned: on failure after the first define, or while applying live
  type: list
  elements: str
  sample: []
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
  description: >-
    When writing a backup, a define or a live apply failed, the domain it failed on. A live apply that
    fails also returns RV(defined) and RV(backups): the configurations were stored before it.
  returned: on failure while backing up, defining or applying live
  type: str
  sample: web03
applied_live:
  description: When a live apply failed, the other running domains this run had changed live.
  returned: on failure while applying live
  type: list
  elements: str
  sample: [web01]
save_image:
  description: >-
    When a domain could not be restored after its save, the image holding its memory (kept; restore it
    with C(virsh restore)).
  returned: on that failure
  type: str
  sample: /var/lib/kvmio/save/kvmio-save-1a2b3c/domain.save
diff:
  description:
    - Before/after XML of each changed domain; with O(xml_path), the file's own text before and after.
    - Secrets (graphics passwords, network disk cookies and the like) are shown as C(********).
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
      description: The XML before the run.
      type: str
    after:
      description: The XML after the run (in check mode, as planned).
      type: str
'''

from ansible_collections.kvmio.tuning.plugins.module_utils._module import run_module
from ansible_collections.kvmio.tuning.plugins.module_utils._disk_tune_runner import DiskTuneRun, argument_spec


def main():
    run_module(DiskTuneRun, argument_spec())


if __name__ == '__main__':
    main()
