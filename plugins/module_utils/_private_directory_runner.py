# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""private_directory: the playbooks' report and demo directories, made or checked by the rule every
private directory of the collection follows (``_trusted_files.make_private_directory``), so that a
playbook never keeps a second, weaker copy of it."""

from __future__ import annotations

from ._errors import KvmioError, PlanError
from ._trusted_files import UntrustedPath, make_private_directory


def argument_spec():
    return {'path': {'type': 'path', 'required': True}}


class PrivateDirectoryRun:
    """private_directory: make ``path`` (0700) or check it, in check mode too."""

    def __init__(self, module):
        self.module = module

    def run(self):
        path = self.module.params['path']
        try:
            real, done = make_private_directory(path, 'path %s' % path, dry_run=self.module.check_mode, tighten=True)
        except UntrustedPath as err:
            raise PlanError('%s is not safe to write to: %s. Another user may have made it, or can change a '
                            'directory or link on its way, to read, replace or redirect what is written there; '
                            'nothing was changed. Remove it, or choose another directory.'
                            % (path, err.details.get('untrusted', err.msg))) from None
        except KvmioError as err:
            raise PlanError('%s; nothing was changed' % err.msg) from None
        result = {'changed': done is not None, 'path': real, 'done': done}
        if self.module._diff:
            before = {'path': real, 'state': 'absent' if done == 'created' else 'directory'}
            if done == 'tightened':
                before['mode'] = 'group or others could read it'
            result['diff'] = {'before': before, 'after': {'path': real, 'state': 'directory', 'mode': '0700'}}
        return result
