#!/usr/bin/python
# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: private_directory
short_description: A directory for the running user alone, under directories only root or that user can change
version_added: 0.1.0
description:
  - Makes O(path) a directory of the user running the module with mode C(0700), or fails naming what another
    user controls. The collection's playbooks put their reports and the demo's files there (on the
    controller); modules use the same rule for their own private directories (the define check's
    cache, O(kvmio.tuning.kvm_disk_tune#module:save_dir)).
  - Every directory from C(/) down to O(path), and every symbolic link on the way, must be owned by root or
    the running user and not writable by group or others (a sticky directory such as C(/tmp) is fine above
    O(path)). Otherwise another local user could rename a directory on the way and put a link in its place
    after the check, and read, replace or redirect what is written there later.
  - Missing directories are created one at a time with mode C(0700); one another user creates first (a
    race in C(/tmp)) is checked like any other and refused.
  - An existing O(path) must belong to the running user; if only group or others can read it, it is given
    mode C(0700). One that group or others can write is refused (something may already be planted in it).
author:
  - kvmio.tuning maintainers (@kvmio)
extends_documentation_fragment:
  - kvmio.tuning._attributes
options:
  path:
    description: The directory.
    type: path
    required: true
'''

EXAMPLES = r'''
- name: A report directory nobody else can read or redirect
  kvmio.tuning.private_directory:
    path: "{{ lookup('ansible.builtin.env', 'HOME') }}/kvm-io-report"
  delegate_to: localhost
'''

RETURN = r'''
path:
  description: The directory, with every symbolic link on the way resolved.
  returned: success
  type: str
  sample: /home/admin/kvm-io-report
done:
  description: V(created), V(tightened) (an existing directory given mode C(0700)) or null (it was private already).
  returned: success
  type: str
  sample: created
'''

from ansible_collections.kvmio.tuning.plugins.module_utils._module import run_module
from ansible_collections.kvmio.tuning.plugins.module_utils._private_directory_runner import PrivateDirectoryRun, \
    argument_spec


def main():
    run_module(PrivateDirectoryRun, argument_spec())


if __name__ == '__main__':
    main()
