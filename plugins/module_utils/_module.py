# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The ``main()`` every module shares: build the AnsibleModule, run, turn a KvmioError into fail_json once."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

from ._errors import KvmioError


def run_module(run_class, argument_spec, **module_kwargs):
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **module_kwargs)
    try:
        result = run_class(module).run()
    except KvmioError as err:
        module.fail_json(msg=err.msg, **err.details)
    module.exit_json(**result)
