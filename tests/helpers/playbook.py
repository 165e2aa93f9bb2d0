# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs the collection's playbooks with ansible-playbook against this host, and reads the JSON callback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
_RECAP = re.compile(r'^localhost\s+:\s+(.*)$', re.MULTILINE)


def run_playbook(name, tmp_path, extra_vars=None, check=False):
    inventory = tmp_path / 'inventory.ini'
    inventory.write_text('[hypervisors]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n'
                         % sys.executable)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.environ['KVMIO_TEST_COLLECTIONS'], ANSIBLE_NOCOLOR='1',
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false', PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    argv = [os.path.join(BIN, 'ansible-playbook'), '-i', str(inventory), os.path.join(REPO, 'playbooks', name),
            '-e', json.dumps(extra_vars or {})]
    if check:
        argv.append('--check')
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    return {'rc': proc.returncode, 'stdout': proc.stdout, 'stderr': proc.stderr}


def stats(report):
    """The PLAY RECAP counters of localhost, e.g. {'ok': 9, 'changed': 2, ...}."""
    match = _RECAP.search(report['stdout'])
    if not match:
        raise AssertionError('no PLAY RECAP in the output (rc %d): %s %s'
                             % (report['rc'], report['stdout'][-3000:], report['stderr'][-2000:]))
    return {key: int(value) for key, value in re.findall(r'(\w+)=(\d+)', match.group(1))}
