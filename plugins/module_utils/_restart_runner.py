# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""domain_restart's flow: rolling, graceful restarts in batches so pending configuration applies."""

from __future__ import annotations

import time

from ._errors import ApplyError
from ._libvirt import LIBVIRT_ARGUMENT_SPEC, LibvirtClient
from ._lock import LOCK_ARGUMENT_SPEC, HostLock
from ._selection import select_names


def argument_spec():
    spec = dict(LIBVIRT_ARGUMENT_SPEC)
    spec.update({
        'domains': {'type': 'list', 'elements': 'str', 'required': True},
        'batch_size': {'type': 'int', 'default': 1},
        'shutdown_timeout': {'type': 'int', 'default': 300},
        'start_timeout': {'type': 'int', 'default': 60},
        'force_off': {'type': 'bool', 'default': False},
    })
    spec.update(LOCK_ARGUMENT_SPEC)
    return spec


def _wait(client, dom, states, timeout):
    deadline = time.monotonic() + timeout
    while True:
        state = client.state(dom)
        if state in states:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


class RestartRun:
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def run(self):
        params = self.params
        if params['batch_size'] < 1:
            raise ApplyError('batch_size must be 1 or more, not %d' % params['batch_size'])
        result = {'changed': False, 'restarted': [], 'skipped': [], 'forced_off': []}
        with HostLock(params['uri'], params['lock_timeout']), LibvirtClient(params['uri']) as client:
            handles = client.persistent_domains()
            names = select_names(handles, params['domains'])
            running = [n for n in names if client.state(handles[n]) == 'running']
            result['skipped'] = [n for n in names if n not in running]
            if self.module.check_mode:
                result.update(changed=bool(running), restarted=running)
                return result
            for start in range(0, len(running), params['batch_size']):
                batch = running[start:start + params['batch_size']]
                self._restart_batch(client, handles, batch, result)
        result['changed'] = bool(result['restarted'])
        return result

    def _restart_batch(self, client, handles, batch, result):
        params = self.params
        for name in batch:
            client.shutdown(handles[name])
        for name in batch:
            if _wait(client, handles[name], ('shutoff',), params['shutdown_timeout']):
                continue
            if not params['force_off']:
                raise ApplyError('domain %s did not shut down within %d s (its guest ignored the ACPI power '
                                 'button); it is still running. Raise shutdown_timeout, or set force_off=true to '
                                 'power it off' % (name, params['shutdown_timeout']),
                                 restarted=result['restarted'], domain=name)
            client.destroy(handles[name])
            result['forced_off'].append(name)
        for name in batch:
            client.start(handles[name])
            if not _wait(client, handles[name], ('running',), params['start_timeout']):
                raise ApplyError('domain %s did not reach running within %d s after start'
                                 % (name, params['start_timeout']), restarted=result['restarted'], domain=name)
            result['restarted'].append(name)
