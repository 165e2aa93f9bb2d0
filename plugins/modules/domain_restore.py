#!/usr/bin/python
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: domain_restore
short_description: Put back the domain XML that kvmio.tuning modules backed up before a redefine
version_added: 0.1.0
description:
  - Restores the inactive XML of libvirt domains from the backups that M(kvmio.tuning.kvm_disk_tune)
    and M(kvmio.tuning.iothread_pin) write before every define.
  - Give the backup files a run returned (RV(kvmio.tuning.kvm_disk_tune#module:backups)) to undo that
    run, or domain names to restore each one's latest (or earliest) backup in O(backup_dir).
  - A domain whose XML already equals its backup is left alone, so a second run reports
    C(changed=false). The XML being replaced is itself saved under O(backup_dir)C(/before-restore/).
  - Running domains get the restored configuration at their next boot; they are listed in
    RV(restart_required).
  - A backup is used only if only root (the user running the module) can change it - the file and
    every directory above it, O(backup_dir) included - and only for the domain it holds (the name
    and the UUID inside the file must be those of the defined domain). Anything else fails the module
    naming the file and the problem, and nothing is changed.
  - Backups of O(kvmio.tuning.kvm_disk_tune#module:xml_path) files (under O(backup_dir)C(/xml_path/)) are
    never restored into a domain, since such a file may be another user's template, which can carry the
    domain's name and UUID (neither is secret).
  - A backup whose C(<emulator>) (read as libvirt reads it) is not a program only root can change - a
    regular file owned by root with an execute bit, in directories only root can change - is refused
    unless it is the domain's emulator already, since libvirt runs the emulator when the domain is defined.
  - Each backup records the libvirt it came from (a first line C(<!-- kvmio.tuning backup of libvirt URI -->),
    the URI in one canonical spelling, so V(qemu+unix:///system) is V(qemu:///system)), and is restored only
    into that libvirt, since another libvirt on the host (an embedded root, a clone reached through another
    URI) can hold a domain with the same name and UUID. With O(domains), backups of other libvirts are passed over;
    a backup named in O(backups) that came from another libvirt fails the module. Backups written before
    the record existed need O(allow_legacy_backups).
author:
  - kvmio.tuning maintainers (@kvmio)
extends_documentation_fragment:
  - kvmio.tuning._libvirt
  - kvmio.tuning._attributes
  - kvmio.tuning._libvirt.LOCK
  - kvmio.tuning._libvirt.DEFINE_CHECK
options:
  backups:
    description:
      - Backup files to restore, at most one per domain (the domain is the one named inside each file).
      - Each must be a regular file (not a link), owned by root or the running user, not writable by
        group or others, UTF-8 domain XML without a DOCTYPE, at most 4 MiB (what libvirt can carry).
    type: list
    elements: path
    default: []
  domains:
    description:
      - Domains whose backup in O(backup_dir) to restore (those not already named by O(backups)).
      - The backup is found by the domain's name (long names are cut in file names, so the name inside
        each file decides); entries that are not trusted regular files are ignored with a warning, and
        a file named after the domain that holds another domain fails the module.
    type: list
    elements: str
    default: []
  backup_dir:
    description:
      - Where the modules wrote their backups.
      - It, and every directory above it, must be writable only by root (the running user); a
        directory another user owns or can write, or a link another user made, is refused.
    type: path
    default: /var/lib/kvmio/backups
  which:
    description: With O(domains), restore the V(latest) backup (undo the last change) or the V(earliest) (the state before any tuning).
    type: str
    choices: [latest, earliest]
    default: latest
  allow_legacy_backups:
    description:
      - Also restore backups that do not record which libvirt they came from (written by kvmio.tuning
        before this record existed).
      - Set it only when you know those backups came from the libvirt at O(uri); otherwise such a backup
        fails the module (named in O(backups)) or is passed over (with O(domains)), naming the file.
    type: bool
    default: false
seealso:
  - module: kvmio.tuning.kvm_disk_tune
'''

EXAMPLES = r'''
- name: Undo exactly what one tuning run changed
  kvmio.tuning.domain_restore:
    backups: "{{ tuned.backups }}"

- name: Put two domains back as they were before any tuning
  kvmio.tuning.domain_restore:
    domains: [web01, web02]
    which: earliest
'''

RETURN = r'''
domains:
  description: Each domain named, restored or already as its backup says.
  returned: always
  type: list
  elements: dict
  sample: [{name: web01, changed: true, restored_from: /var/lib/kvmio/backups/web01.20261126T101500.123456Z.xml}]
  contains:
    name:
      description: The domain.
      type: str
    changed:
      description: Whether its XML was restored (in check mode, would be).
      type: bool
    restored_from:
      description: The backup file its XML was compared with and restored from.
      type: str
restart_required:
  description: Running domains whose configuration was restored; it applies at their next boot.
  returned: always
  type: list
  elements: str
  sample: [web01]
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
  description: Files holding the XML each domain had before the restore.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/kvmio/backups/before-restore/web01.20261126T103000.654321Z.xml]
defined:
  description: >-
    When a restore failed, the domains this run restored and could not put back (see RV(rolled_back)); RV(backups)
    holds what they had. Empty when everything was put back.
  returned: on failure after the first restore
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
  description: The domain whose backup or restore failed.
  returned: on failure
  type: str
  sample: web02
diff:
  description: Before/after XML of each restored domain, secrets (graphics passwords) shown as C(********).
  returned: when diff mode is on
  type: list
  elements: dict
  sample: [{before_header: web01 (inactive XML, now), after_header: web01 (restored from /var/lib/kvmio/backups/web01...xml),
            before: "<domain type='kvm'>...", after: "<domain type='kvm'>..."}]
  contains:
    before_header:
      description: Which XML the left side is.
      type: str
    after_header:
      description: Which XML the right side is.
      type: str
    before:
      description: The domain's inactive XML now.
      type: str
    after:
      description: The XML the backup restores.
      type: str
'''

from ansible_collections.kvmio.tuning.plugins.module_utils._module import run_module
from ansible_collections.kvmio.tuning.plugins.module_utils._restore_runner import RestoreRun, argument_spec


def main():
    run_module(RestoreRun, argument_spec())


if __name__ == '__main__':
    main()
