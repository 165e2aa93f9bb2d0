# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs every @pytest.mark.embed test in a child pytest process.

Once a process has opened libvirt's embedded QEMU driver, that driver claims every qemu:// URI
in the process, so qemu:///system tests and embedded-driver tests cannot share a process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def test_embedded_driver_tests_pass():
    if os.environ.get('KVMIO_EMBED_PROCESS') == '1':
        pytest.skip('this is the child process already')
    env = dict(os.environ, KVMIO_EMBED_PROCESS='1')
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-m', 'embed', '-p', 'no:cacheprovider',
                           '-rfE', HERE], env=env, capture_output=True, text=True, check=False)
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, proc.stdout[-30000:] + proc.stderr[-5000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert ' passed' in summary and 'failed' not in summary and 'error' not in summary, summary
