# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The molecule scenarios, run as users run them (`molecule test -s NAME`), inside the test suite."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


@pytest.mark.parametrize('scenario', ['default', 'fleet'])
def test_molecule_scenario(scenario):
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''), ANSIBLE_NOCOLOR='1',
               NO_COLOR='1', ANSIBLE_COLLECTIONS_PATH=os.environ['KVMIO_TEST_COLLECTIONS'])
    proc = subprocess.run([os.path.join(BIN, 'molecule'), 'test', '-s', scenario], cwd=REPO, env=env,
                          capture_output=True, text=True, check=False)
    output = re.sub(r'\x1b\[[0-9;]*m', '', proc.stdout + proc.stderr)
    assert proc.returncode == 0, output[-20000:]
    steps = ('converge', 'idempotence', 'verify') + (('side_effect',) if scenario == 'fleet' else ())
    for step in steps:
        assert re.search(r'%s \S+ %s: Executed: Successful' % (scenario, step), output), (step, output[-5000:])
    recap = re.search(r'^%s\s*: actions=(\d+)\s+successful=(\d+).*failed=0' % scenario, output, re.MULTILINE)
    assert recap and recap.group(1) == recap.group(2), output[-3000:]
