# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The execution environment's dependency files list everything the modules import and run.

Reads the plugins' source (ast): every non-standard-library import must be in requirements.txt,
every executable the code runs must be in bindep.txt for both Debian and RPM platforms.
"""

from __future__ import annotations

import ast
import os
import re
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGINS = os.path.join(REPO, 'plugins')
# Distribution name of each importable top-level package the plugins may use.
DISTRIBUTION = {'libvirt': 'libvirt-python', 'libvirt_qemu': 'libvirt-python', 'lxml': 'lxml'}
# Executables and the packages that ship them. None: Debian only (kvm_io_bench builds its guest from
# Debian packages; on other distributions it takes a kernel and initrd built elsewhere).
BINARY_PACKAGES = {'qemu-img': {'dpkg': 'qemu-utils', 'rpm': 'qemu-img'},
                   'qemu-io': {'dpkg': 'qemu-utils', 'rpm': 'qemu-img'},
                   'apt-get': {'dpkg': 'apt', 'rpm': None},
                   'dpkg-deb': {'dpkg': 'dpkg', 'rpm': None},
                   'dpkg-query': {'dpkg': 'dpkg', 'rpm': None}}


def python_files():
    for top, _dirs, files in os.walk(PLUGINS):
        for name in files:
            if name.endswith('.py'):
                yield os.path.join(top, name)


def third_party_imports():
    found = set()
    for path in python_files():
        with open(path, encoding='utf-8') as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split('.')[0]
                if top not in sys.stdlib_module_names and top not in ('ansible', 'ansible_collections', '__future__'):
                    found.add(top)
    return found


def executables():
    """String constants the code passes as a binary: ``binary='...'`` defaults and argv[0] literals."""
    found = set()
    for path in python_files():
        with open(path, encoding='utf-8') as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.arguments):
                for arg, default in zip(node.args[-len(node.defaults):] if node.defaults else [], node.defaults):
                    if arg.arg == 'binary' and isinstance(default, ast.Constant):
                        found.add(default.value)
            if isinstance(node, ast.Call) and getattr(node.func, 'attr', '') in ('run_command', 'run', 'Popen'):
                if node.args and isinstance(node.args[0], ast.List) and node.args[0].elts and \
                        isinstance(node.args[0].elts[0], ast.Constant):
                    found.add(node.args[0].elts[0].value)
    return found


def requirement_names():
    with open(os.path.join(REPO, 'requirements.txt'), encoding='utf-8') as handle:
        return {re.split(r'[<>=!~ ;\[]', line.strip())[0].lower() for line in handle
                if line.strip() and not line.startswith('#')}


def bindep_packages(platform, profile=None):
    packages = set()
    with open(os.path.join(REPO, 'bindep.txt'), encoding='utf-8') as handle:
        for line in handle:
            if line.strip() and not line.startswith('#') and 'platform:%s' % platform in line:
                if profile is None or re.search(r'[\[ ]%s[\] ]' % re.escape(profile), line):
                    packages.add(line.split()[0])
    return packages


def test_every_import_is_in_requirements():
    imports = third_party_imports()
    assert imports == set(DISTRIBUTION), 'new third-party import: add it to DISTRIBUTION and requirements.txt'
    assert {DISTRIBUTION[name].lower() for name in imports} <= requirement_names()


def test_every_binary_is_in_bindep_for_debian_and_rpm():
    binaries = executables()
    assert 'qemu-img' in binaries
    assert binaries <= set(BINARY_PACKAGES), 'new executable: add it to BINARY_PACKAGES and bindep.txt'
    for binary in binaries:
        assert BINARY_PACKAGES[binary]['dpkg'] in bindep_packages('dpkg', 'hypervisor')
        assert BINARY_PACKAGES[binary]['dpkg'] in bindep_packages('dpkg', 'test')
        if BINARY_PACKAGES[binary]['rpm']:
            assert BINARY_PACKAGES[binary]['rpm'] in bindep_packages('rpm')


def test_guest_packages_are_listed_for_download_and_never_for_install():
    from ansible_collections.kvmio.tuning.plugins.module_utils._initramfs import DEFAULT_KERNEL_PACKAGE, \
        TOOL_PACKAGES

    guest = bindep_packages('dpkg', 'guest')
    assert {DEFAULT_KERNEL_PACKAGE, *TOOL_PACKAGES} <= guest
    # A profile that installs (test, hypervisor) never names a kernel: the guest's kernel is downloaded only.
    installed = bindep_packages('dpkg', 'test') | bindep_packages('dpkg', 'hypervisor')
    assert not {p for p in installed if p.startswith('linux-image')}
    assert not guest & installed


def test_execution_environment_points_at_those_files():
    with open(os.path.join(REPO, 'meta', 'execution-environment.yml'), encoding='utf-8') as handle:
        definition = yaml.safe_load(handle)
    assert definition['version'] == 3
    deps = definition['dependencies']
    here = os.path.join(REPO, 'meta')
    assert os.path.normpath(os.path.join(here, deps['python'])) == os.path.join(REPO, 'requirements.txt')
    assert os.path.normpath(os.path.join(here, deps['system'])) == os.path.join(REPO, 'bindep.txt')
    assert {'name': 'kvmio.tuning'} in deps['galaxy']['collections']
    # Building libvirt-python in the EE needs its compile-time packages.
    assert {'gcc', 'libvirt-devel', 'python3-devel', 'pkgconf-pkg-config'} <= bindep_packages('rpm')
