# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs modules in-process, as Ansible would run them on a host."""

from __future__ import annotations

import contextlib
import io
import json


class ModuleResult(dict):
    @property
    def failed(self):
        return bool(self.get('failed'))

    @property
    def warning_messages(self):
        """Warning texts (ansible-core 2.19 returns them as structured summaries)."""
        texts = []
        for warning in self.get('warnings', []):
            if isinstance(warning, dict):
                warning = warning.get('event', warning).get('msg', str(warning))
            texts.append(warning)
        return texts


def run_module(module, args, check_mode=False, diff=False):
    """Runs a module's main() with ``args`` the way Ansible passes them; returns its result dict."""
    from ansible.module_utils.testing import patch_module_args

    params = dict(args)
    params['_ansible_check_mode'] = check_mode
    params['_ansible_diff'] = diff
    out = io.StringIO()
    with patch_module_args(params), contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit:
            pass
    text = out.getvalue()
    try:
        return ModuleResult(json.loads(text[text.index('{'):]))
    except ValueError:
        raise AssertionError('module printed no JSON result: %r' % text) from None


def start_module_process(module_name, args):
    """Starts a module as Ansible does on a host: its own Python process reading an args file.
    Returns (Popen, args file); read the result with ``finish_module_process``."""
    import os
    import subprocess
    import sys
    import tempfile

    handle = tempfile.NamedTemporaryFile('w', suffix='.json', delete=False)
    with handle:
        # ``args`` may set _ansible_check_mode/_ansible_diff (a keyword after ``args`` would override them).
        json.dump({'ANSIBLE_MODULE_ARGS': dict({'_ansible_check_mode': False, '_ansible_diff': False}, **args)}, handle)
    env = dict(os.environ, PYTHONPATH=os.environ['KVMIO_TEST_COLLECTIONS'])
    proc = subprocess.Popen([sys.executable, '-m', 'ansible_collections.kvmio.tuning.plugins.modules.' + module_name,
                             handle.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    return proc, handle.name


def finish_module_process(proc, args_file, timeout=300):
    import os

    out, err = proc.communicate(timeout=timeout)
    os.unlink(args_file)
    try:
        result = ModuleResult(json.loads(out[out.index('{'):]))
    except ValueError:
        raise AssertionError('module printed no JSON (rc %s): %r %r' % (proc.returncode, out[-2000:], err[-2000:])) from None
    result.stderr = err
    return result


def run_module_bounded(module_name, args, timeout=120):
    """A module in its own process (``start_module_process``); its result, or None when it was still
    running after ``timeout`` seconds: it hangs, and is killed with its children (qemu-img)."""
    import os
    import signal
    import subprocess

    proc, args_file = start_module_process(module_name, args)
    try:
        return finish_module_process(proc, args_file, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        os.unlink(args_file)
        return None
