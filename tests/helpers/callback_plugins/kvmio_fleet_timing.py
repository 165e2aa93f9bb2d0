# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a fleet run's time goes, per host: SSH connection, module transfer, module run, controller.

An instrument of benchmarks/bench_fleet.py and tests/integration/test_fleet.py, not a plugin of the
collection. Enabled with ANSIBLE_CALLBACK_PLUGINS=tests/helpers/callback_plugins,
ANSIBLE_CALLBACKS_ENABLED=kvmio_fleet_timing and KVMIO_FLEET_TIMING=FILE (JSON lines appended).

How it measures, without changing what Ansible does:
- Every task of every host: the controller's time from ``v2_runner_on_start`` to its result.
- Every command the ssh connection plugin runs (its ``exec_command`` is wrapped in the controller
  before the workers fork): the controller's wall time around it, and timestamps taken on the host
  by bash (``$EPOCHREALTIME``, the same clock: it is one machine) - when the remote shell started
  (T0), when the module's payload had arrived on its stdin (T1: the wrapper first copies stdin to a
  file, which is what a pipelined module's interpreter does first anyway), when the interpreter
  exited (T2) and when the wrapper had cleaned up (T3) - and the CPU time of the interpreter and
  what it ran (qemu-img), from bash's ``times``. Then

    connection = (T0 - start) + (end - T3)   ssh client, multiplexed session or first handshake, exit
    transfer   = T1 - T0                     the pipelined payload reaching the host
    run        = T2 - T1                     the host's Python: AnsiballZ unpacking, imports, the module
    (T3 - T2 is the wrapper's own clean-up, counted apart as instrument overhead)

  Without pipelining, file transfers (``put_file``) and the helper commands (mkdir, chmod) count as
  transfer, and the ``python AnsiballZ_*.py`` command as run.
- controller = a task's time minus the commands above: templating, building the module payload
  (AnsiballZ), forking the worker, queueing and processing the result (includes, set_fact,
  validate_argument_spec and skipped tasks are all controller time).
- At the end, the CPU time of ansible-playbook's main process on its own (``os.times``): it runs the
  strategy and handles every result, one core at most however many forks there are.

The wrapper's own cost (one ``cat`` and one ``rm`` on the host per module call) is inside the
figures; ``bench_fleet.py --uninstrumented`` times a run without the instrument beside one with it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time

from ansible.executor.task_executor import TaskExecutor
from ansible.plugins.callback import CallbackBase
from ansible.plugins.connection import ssh

DOCUMENTATION = '''
    name: kvmio_fleet_timing
    type: aggregate
    short_description: per-host split of a run's time into SSH connection, module transfer, module run
    description:
      - Instrument of kvmio.tuning's benchmarks/bench_fleet.py and fleet test; writes JSON lines to KVMIO_FLEET_TIMING.
    requirements:
      - enable in callbacks_enabled, bash on the managed hosts
'''

_MARK = '@@kvmio-timing@@'
_MARK_RE = re.compile((r'\r?\n%s (T[0123]) ([0-9.]+)\r?\n' % re.escape(_MARK)).encode())
# bash's `times`: the shell's user and system time, then its children's (the interpreter, qemu-img).
_CPU_RE = re.compile((r'\r?\n%s CPU \d+m[0-9.]+s \d+m[0-9.]+s\r?\n(\d+)m([0-9.]+)s (\d+)m([0-9.]+)s\r?\n'
                      % re.escape(_MARK)).encode())
_MODULE_CMD = re.compile(r'python[0-9.]*[\'"]? +[\'"]?\S*AnsiballZ_')     # not the chmod of the file
_OUT = os.environ.get('KVMIO_FLEET_TIMING')
_CURRENT = {}          # in a worker process: the task and host it runs


def _write(record):
    if not _OUT:
        return
    line = (json.dumps(record, sort_keys=True) + '\n').encode()
    fd = os.open(_OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)       # one write per line with O_APPEND: lines of parallel workers never mix
    finally:
        os.close(fd)


def _stamp(name):
    return 'printf "\\n%s %s %%s\\n" "$EPOCHREALTIME" >&2' % (_MARK, name)


def _wrapped(cmd, piped):
    cpu = 'printf "\n%s CPU " >&2; times >&2' % _MARK     # a builtin: no fork
    if piped:
        script = ('%s; f="${TMPDIR:-/tmp}/.kvmio-timing.$$"; cat >"$f"; %s; %s <"$f"; rc=$?; %s; rm -f "$f"; %s; '
                  '%s; exit $rc' % (_stamp('T0'), _stamp('T1'), cmd, _stamp('T2'), cpu, _stamp('T3')))
    else:
        script = '%s; %s; rc=$?; %s; %s; %s; exit $rc' % (_stamp('T0'), cmd, _stamp('T2'), cpu, _stamp('T3'))
    return '/bin/bash -c %s' % shlex.quote(script)


def _strip(data):
    data = data or b''
    stamps = {k.decode(): float(v) for k, v in _MARK_RE.findall(data)}
    for minutes_user, user, minutes_sys, system in _CPU_RE.findall(data):
        stamps['cpu'] = 60 * (int(minutes_user) + int(minutes_sys)) + float(user) + float(system)
    return _CPU_RE.sub(b'', _MARK_RE.sub(b'', data)), stamps


def _install():
    original_run = TaskExecutor.run
    original_exec = ssh.Connection.exec_command
    original_put = ssh.Connection.put_file

    def run(self):
        _CURRENT.update(host=self._host.get_name(), task=self._task.get_name(), action=self._task.action)
        return original_run(self)

    def exec_command(self, cmd, in_data=None, sudoable=True):
        kind = 'module' if in_data is not None or _MODULE_CMD.search(cmd) else 'helper'
        start = time.time()
        rc, out, err = original_exec(self, _wrapped(cmd, in_data is not None), in_data=in_data, sudoable=sudoable)
        end = time.time()
        out, stamps_out = _strip(out)
        err, stamps = _strip(err)
        stamps.update(stamps_out)            # with a tty (-tt) stderr arrives on stdout
        _write(dict(_CURRENT, record='exec', kind=kind, start=start, end=end, bytes=len(in_data or b''),
                    piped=in_data is not None, **stamps))
        return rc, out, err

    def put_file(self, in_path, out_path):
        start = time.time()
        result = original_put(self, in_path, out_path)
        _write(dict(_CURRENT, record='exec', kind='put', start=start, end=time.time(),
                    bytes=os.path.getsize(in_path), piped=False))
        return result

    TaskExecutor.run = run
    ssh.Connection.exec_command = exec_command
    ssh.Connection.put_file = put_file


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'kvmio_fleet_timing'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._started = {}
        if _OUT:
            _install()            # here, in the controller, before any worker forks

    def v2_runner_on_start(self, host, task):
        self._started[(host.get_name(), task._uuid)] = time.time()

    def _done(self, result, status):
        host, task = result._host.get_name(), result._task
        start = self._started.pop((host, task._uuid), None)
        if start is not None:
            _write({'record': 'task', 'host': host, 'task': task.get_name(), 'action': task.action,
                    'status': status, 'start': start, 'end': time.time(),
                    'result_bytes': len(json.dumps(result._result, default=str))})

    def v2_runner_on_ok(self, result):
        self._done(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, 'failed')

    def v2_runner_on_skipped(self, result):
        self._done(result, 'skipped')

    def v2_runner_on_unreachable(self, result):
        self._done(result, 'unreachable')

    def v2_playbook_on_stats(self, stats):
        times = os.times()
        _write({'record': 'process', 'user': times.user, 'system': times.system,
                'children_user': times.children_user, 'children_system': times.children_system})
