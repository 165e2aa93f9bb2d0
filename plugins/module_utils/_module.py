# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The ``main()`` every module shares: build the AnsibleModule, run, turn a KvmioError into fail_json once;
and the validation of ``overrides`` entries, which Ansible's argument spec cannot express (a dict keyed
by domain names or globs, each value a dict of options)."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ._errors import KvmioError, PlanError


def validated_overrides(raw, spec):
    """{pattern: validated dict without unset options}; an entry that is not a dict, holds an unknown
    setting (a typo such as ``skp``) or a value of the wrong type fails naming the entry."""
    result = {}
    for pattern, entry in (raw or {}).items():
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise PlanError("overrides['%s'] must be a dictionary of settings, not %s" % (pattern, type(entry).__name__))
        # An empty value (``io:`` in YAML) leaves the option as the module has it.
        outcome = ArgumentSpecValidator(spec).validate({k: v for k, v in entry.items() if v is not None})
        if outcome.unsupported_parameters:
            raise PlanError("overrides['%s']: unknown setting %s (an override takes %s)" % (
                pattern, ', '.join(sorted(outcome.unsupported_parameters)), ', '.join(sorted(spec))))
        if outcome.error_messages:
            raise PlanError("overrides['%s']: %s" % (pattern, '; '.join(outcome.error_messages)))
        result[pattern] = {k: v for k, v in outcome.validated_parameters.items() if v is not None}
    return result


def run_module(run_class, argument_spec, **module_kwargs):
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **module_kwargs)
    try:
        result = run_class(module).run()
    except KvmioError as err:
        module.fail_json(msg=err.msg, **err.details)
    module.exit_json(**result)
