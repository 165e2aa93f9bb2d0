#!/usr/bin/python
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: domain_restart
short_description: Restart running libvirt domains in rolling batches so pending configuration applies
version_added: 0.1.0
description:
  - Cache, io, bus and iothread changes reach a running domain only when QEMU starts again.
    This module restarts the named domains that are running, O(batch_size) at a time - a graceful
    shutdown (the ACPI power button), a wait of at most O(shutdown_timeout) seconds, a start, and a
    wait until the domain runs - before it moves to the next batch.
  - Domains that are not running are skipped; they pick up their configuration when next started.
  - A guest that ignores the power button fails the run, leaving it running, unless O(force_off=true)
    allows a forced power-off after the timeout.
  - A run never leaves off a guest it shut down - every guest of a batch that did shut down is
    started again before the run fails, and the error names what happened to each guest; later
    batches are not attempted.
author:
  - kvmio.tuning maintainers (@kvmio)
extends_documentation_fragment:
  - kvmio.tuning._libvirt
  - kvmio.tuning._attributes
  - kvmio.tuning._libvirt.LOCK
attributes:
  diff_mode:
    support: none
    details: A restart changes no configuration, so there is nothing to show.
options:
  domains:
    description: Domains to restart (names or globs), typically a tuning module's RV(kvmio.tuning.kvm_disk_tune#module:restart_required).
    type: list
    elements: str
    required: true
  batch_size:
    description: How many domains restart at the same time.
    type: int
    default: 1
  shutdown_timeout:
    description: Seconds to wait for a guest to power off after the ACPI request.
    type: int
    default: 300
  start_timeout:
    description: Seconds to wait for a started domain to be running.
    type: int
    default: 60
  force_off:
    description: Power a domain off (like pulling the plug) when it has not shut down within O(shutdown_timeout).
    type: bool
    default: false
notes:
  - Check mode reports which domains would restart.
seealso:
  - module: kvmio.tuning.kvm_disk_tune
  - module: kvmio.tuning.iothread_pin
'''

EXAMPLES = r'''
- name: Restart what the disk policy changed, two at a time
  kvmio.tuning.domain_restart:
    domains: "{{ tuned.restart_required }}"
    batch_size: 2
    shutdown_timeout: 180
'''

RETURN = r'''
restarted:
  description: Domains restarted (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [web01, web02]
skipped:
  description: Named domains that were not running, so not restarted.
  returned: always
  type: list
  elements: str
  sample: [batch07]
forced_off:
  description: Domains powered off after their shutdown timeout (O(force_off=true)).
  returned: always
  type: list
  elements: str
  sample: []
not_restarted:
  description: When a batch failed, its domains that did not shut down or did not start again.
  returned: on failure
  type: list
  elements: str
  sample: [legacy03]
not_attempted:
  description: When a batch failed, the running domains of later batches, left running and not restarted.
  returned: on failure
  type: list
  elements: str
  sample: [web03, web04]
domain:
  description: When a batch failed, the first domain that did not shut down or start again.
  returned: on failure
  type: str
  sample: legacy03
'''

from ansible_collections.kvmio.tuning.plugins.module_utils._module import run_module
from ansible_collections.kvmio.tuning.plugins.module_utils._restart_runner import RestartRun, argument_spec


def main():
    run_module(RestartRun, argument_spec())


if __name__ == '__main__':
    main()
