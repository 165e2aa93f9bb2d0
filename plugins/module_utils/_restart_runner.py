# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""domain_restart's flow: rolling, graceful restarts in batches so pending configuration applies."""

from __future__ import annotations

import time

from ._errors import ApplyError, KvmioError
from ._libvirt import LIBVIRT_ARGUMENT_SPEC, LibvirtClient, lock_subject
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


def _wait_all(client, handles, names, state, timeout):
    """The subset of ``names`` that reached ``state`` within ``timeout`` seconds (one shared deadline:
    a batch waits as long as its slowest guest, not the sum of them)."""
    deadline = time.monotonic() + timeout
    reached, waiting = set(), list(names)
    while True:
        for name in list(waiting):
            try:
                now = client.state(handles[name])
            except KvmioError:
                continue
            if now == state:
                reached.add(name)
                waiting.remove(name)
        if not waiting or time.monotonic() >= deadline:
            return reached
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
        with HostLock(lock_subject(params['uri']), params['lock_timeout']), LibvirtClient(params['uri']) as client:
            handles = client.persistent_domains()
            names = select_names(handles, params['domains'])
            running = [n for n in names if client.state(handles[n]) == 'running']
            result['skipped'] = [n for n in names if n not in running]
            if self.module.check_mode:
                result.update(changed=bool(running), restarted=running)
                return result
            for start in range(0, len(running), params['batch_size']):
                batch = running[start:start + params['batch_size']]
                self._restart_batch(client, handles, batch, result, later=running[start + params['batch_size']:])
        result['changed'] = bool(result['restarted'])
        return result

    def _restart_batch(self, client, handles, batch, result, later):
        """Shuts the batch down, then starts again every guest this run shut down, whatever happened to
        the others: a run never leaves a guest off that was running before it. Then fails, naming what
        happened to each guest, if one did not shut down or did not start."""
        params = self.params
        problems = {}
        asked = []
        for name in batch:
            try:
                client.shutdown(handles[name])
                asked.append(name)
            except KvmioError as err:
                problems[name] = 'could not be asked to shut down (%s); it is still running' % err.msg
        down = _wait_all(client, handles, asked, 'shutoff', params['shutdown_timeout'])
        for name in asked:
            if name in down:
                continue
            if not params['force_off']:
                problems[name] = ('did not shut down within %d s (its guest ignored the ACPI power button); it is '
                                  'still running. Raise shutdown_timeout, or set force_off=true to power it off'
                                  % params['shutdown_timeout'])
                continue
            try:
                client.destroy(handles[name])
            except KvmioError as err:
                problems[name] = 'did not shut down within %d s and could not be powered off (%s)' % (
                    params['shutdown_timeout'], err.msg)
                continue
            down.add(name)
            result['forced_off'].append(name)
        started = []
        for name in [n for n in batch if n in down]:
            try:
                client.start(handles[name])
                started.append(name)
            except KvmioError as err:
                problems[name] = 'was shut down but could not be started again (%s); it is off' % err.msg
        running = _wait_all(client, handles, started, 'running', params['start_timeout'])
        for name in started:
            if name in running:
                result['restarted'].append(name)
            else:
                problems[name] = 'was started again but did not reach running within %d s' % params['start_timeout']
        if problems:
            first = next(n for n in batch if n in problems)
            others = [n for n in batch if n not in problems]
            message = '; '.join('domain %s %s' % (n, problems[n]) for n in batch if n in problems)
            if others:
                message += '; the other domains of its batch were restarted: %s' % ', '.join(others)
            if later:
                message += '; not attempted (later batches, still running): %s' % ', '.join(later)
            raise ApplyError(message, domain=first, changed=bool(result['restarted'] or result['forced_off']),
                             restarted=result['restarted'], forced_off=result['forced_off'],
                             not_restarted=sorted(problems), not_attempted=list(later))
