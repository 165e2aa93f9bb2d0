# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fleet of simulated hypervisors on one machine, as molecule/fleet builds it, for benchmarks and tests.

Each hypervisor is a Unix user (PREFIX1, PREFIX2, ...) with its own session ``libvirtd`` and
``virtlogd`` (``runuser -u USER -- env HOME=... LIBVIRT_AUTOSTART=0 libvirtd --daemon``), its own
domains and images under its home, reached over real SSH at its own loopback address (one ``sshd``
of the lab's own, with its own host key and port). The modules run there under the host's
``/usr/bin/python3`` with the distribution's ``python3-libvirt`` and ``python3-lxml``.

Everything the lab creates is under ROOT or named PREFIXn, and ``teardown()`` removes it all: the
users' processes (libvirtd, virtlogd, sessions), the lab's sshd, the users, ROOT, and the
controller's SSH master connections. A lab left behind by a killed run is torn down by the next
``create()``. It never touches other users (the molecule fleet's ``kvmio-hv*``), the system libvirtd
or the system sshd.

Run as root. Usage from Python::

    lab = FleetLab(prefix='kvmio-bench-hv', root='/var/lib/kvmio-bench-fleet', subnet='127.0.2.', port=2232)
    lab.create(4)
    lab.populate(range(1, 5), domains=10)
    ...
    lab.teardown()
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

HOST_PYTHON = '/usr/bin/python3'

# Runs as the hypervisor's user under its /usr/bin/python3: removes the user's domains, images and
# backups, then defines DOMAINS domains of type qemu with two thin qcow2 images each (vda, vdb,
# virtio, no cache mode: as most hypervisors have them).
POPULATE = textwrap.dedent('''
    import os, shutil, subprocess, sys, time
    import libvirt
    count, size, prefix = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    home = os.environ['HOME']
    for _ in range(100):
        try:
            conn = libvirt.open('qemu:///session')
            break
        except libvirt.libvirtError:
            time.sleep(0.1)
    else:
        sys.exit('libvirtd of %s does not answer' % home)
    for dom in conn.listAllDomains():
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    for name in ('images', 'kvmio-backups'):
        shutil.rmtree(os.path.join(home, name), ignore_errors=True)
    images = os.path.join(home, 'images')
    os.mkdir(images, 0o755)
    for i in range(count):
        name = '%s%03d' % (prefix, i)
        disks = ''
        for dev in ('vda', 'vdb'):
            path = os.path.join(images, '%s-%s.qcow2' % (name, dev))
            subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', path, size], check=True)
            disks += ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                      "<source file='%s'/><target dev='%s' bus='virtio'/></disk>" % (path, dev))
        conn.defineXML("<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                       "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>%s"
                       "<memballoon model='none'/></devices></domain>" % (name, disks))
''')


def _run(argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


class FleetLab:
    def __init__(self, prefix='kvmio-bench-hv', root='/var/lib/kvmio-bench-fleet', subnet='127.0.2.', port=2232,
                 domain_prefix='vm', image_size='64M'):
        if not prefix.startswith('kvmio-') or prefix.startswith('kvmio-hv'):
            raise ValueError('a lab prefix starts with kvmio- and is not the molecule fleet\'s kvmio-hv: %r' % prefix)
        self.prefix = prefix
        self.root = root
        self.subnet = subnet
        self.port = port
        self.domain_prefix = domain_prefix
        self.image_size = image_size
        self.key = os.path.join(root, 'controller_key')
        self.control_dir = os.path.join(root, 'ssh-control')
        self.hosts = []
        self._made_run_sshd = False

    # --- names --------------------------------------------------------------------------------

    def user(self, number):
        return '%s%d' % (self.prefix, number)

    def address(self, number):
        return '%s%d' % (self.subnet, number)

    def home(self, number):
        return os.path.join(self.root, self.user(number))

    def as_user(self, number, argv):
        """argv run as the hypervisor's user, as molecule/fleet does."""
        return ['runuser', '-u', self.user(number), '--', 'env', 'HOME=%s' % self.home(number), 'LIBVIRT_AUTOSTART=0'
                ] + list(argv)

    # --- create ------------------------------------------------------------------------------

    def create(self, count):
        self.teardown()
        os.makedirs(self.root, mode=0o755)
        os.chmod(self.root, 0o755)
        os.makedirs(self.control_dir, mode=0o700)
        _run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', self.key])
        _run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', os.path.join(self.root, 'ssh_host_ed25519_key')])
        self.hosts = list(range(1, count + 1))
        for number in self.hosts:
            self._create_user(number)
        self._start_sshd()
        for number in self.hosts:
            _run(self.as_user(number, ['sh', '-c', 'virtlogd --daemon && libvirtd --daemon']))
        for number in self.hosts:
            self._wait_for_libvirt(number)

    def _create_user(self, number):
        user, home = self.user(number), self.home(number)
        # No password but not locked ("!"): sshd refuses key logins to locked accounts.
        _run(['useradd', '--home-dir', home, '--no-create-home', '--shell', '/bin/bash', '--password', '*',
              '--comment', 'kvmio.tuning fleet lab', user])
        ssh_dir = os.path.join(home, '.ssh')
        os.makedirs(ssh_dir, mode=0o700)
        shutil.copyfile(self.key + '.pub', os.path.join(ssh_dir, 'authorized_keys'))
        with open(os.path.join(ssh_dir, 'environment'), 'w', encoding='utf-8') as handle:
            handle.write('LIBVIRT_AUTOSTART=0\n')      # a stopped session daemon must stay down
        entry = pwd.getpwnam(user)
        for path in [home] + [os.path.join(d, f) for d, _dirs, files in os.walk(home) for f in files] + [ssh_dir]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(home, 0o755)

    def _start_sshd(self):
        config = os.path.join(self.root, 'sshd_config')
        lines = ['Port %d' % self.port] + ['ListenAddress %s' % self.address(n) for n in self.hosts] + [
            'HostKey %s' % os.path.join(self.root, 'ssh_host_ed25519_key'),
            'PidFile %s' % os.path.join(self.root, 'sshd.pid'),
            'AuthorizedKeysFile .ssh/authorized_keys',
            'PasswordAuthentication no', 'PermitUserEnvironment yes', 'UsePAM no', 'StrictModes no',
            # A fleet run opens one connection per host at once, then many sessions over each.
            'MaxStartups 200', 'MaxSessions 100',
            'Subsystem sftp /usr/lib/openssh/sftp-server']
        with open(config, 'w', encoding='utf-8') as handle:
            handle.write('\n'.join(lines) + '\n')
        if not os.path.isdir('/run/sshd'):
            os.makedirs('/run/sshd', mode=0o755)
            self._made_run_sshd = True
        _run(['/usr/sbin/sshd', '-f', config])
        for _attempt in range(100):
            if os.path.exists(os.path.join(self.root, 'sshd.pid')):
                return
            time.sleep(0.05)
        raise RuntimeError('the lab sshd did not start (%s)' % config)

    def _wait_for_libvirt(self, number):
        for _attempt in range(100):
            proc = subprocess.run(self.as_user(number, ['virsh', '-q', '-c', 'qemu:///session', 'version']),
                                  capture_output=True, check=False)
            if proc.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError('libvirtd of %s does not answer' % self.user(number))

    def populate(self, numbers, domains, parallel=2):
        """Gives each host DOMAINS fresh domains of two thin images, removing what it had; ``parallel`` at once."""
        pending = list(numbers)
        running = []
        while pending or running:
            while pending and len(running) < parallel:
                number = pending.pop(0)
                argv = self.as_user(number, [HOST_PYTHON, '-c', POPULATE, str(domains), self.image_size,
                                             self.domain_prefix])
                running.append((number, subprocess.Popen(argv, cwd=self.home(number), stdout=subprocess.PIPE,
                                                         stderr=subprocess.STDOUT, text=True)))
            number, proc = running.pop(0)
            output = proc.communicate()[0]
            if proc.returncode:
                raise RuntimeError('populating %s failed: %s' % (self.user(number), output[-2000:]))

    def daemon_cpu(self, number):
        """CPU seconds the host's libvirtd and virtlogd have used so far (they do the libvirt calls' work)."""
        uid = pwd.getpwnam(self.user(number)).pw_uid
        ticks = os.sysconf('SC_CLK_TCK')
        total = 0.0
        for pid in filter(str.isdigit, os.listdir('/proc')):
            try:
                if os.stat('/proc/%s' % pid).st_uid != uid:
                    continue
                with open('/proc/%s/stat' % pid, encoding='ascii') as handle:
                    comm, fields = handle.read().split(' (', 1)[1].rsplit(') ', 1)
            except (OSError, ValueError):
                continue
            if comm in ('libvirtd', 'virtlogd'):
                fields = fields.split()
                total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def images(self, number, domains):
        """The image paths of a populated host, in domain order."""
        return [os.path.join(self.home(number), 'images', '%s%03d-%s.qcow2' % (self.domain_prefix, i, dev))
                for i in range(domains) for dev in ('vda', 'vdb')]

    # --- inventory ---------------------------------------------------------------------------

    def inventory(self, numbers, host_vars=None, group_vars=None):
        """An inventory (a dict; JSON is YAML) of the hosts in group ``hypervisors``, as molecule/fleet's."""
        hosts = {}
        for number in numbers:
            entry = {'ansible_host': self.address(number), 'ansible_user': self.user(number)}
            entry.update((host_vars or {}).get(number, {}))
            hosts['hv%d' % number] = entry
        variables = {
            'ansible_port': self.port,
            'ansible_ssh_private_key_file': self.key,
            'ansible_ssh_common_args': '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null',
            # The distribution's Python with python3-libvirt and python3-lxml, not the controller's venv.
            'ansible_python_interpreter': HOST_PYTHON,
            'disk_policy_uri': 'qemu:///session',
            'disk_policy_backup_dir': '~/kvmio-backups',
            'cpu_pinning_uri': 'qemu:///session',
            'cpu_pinning_backup_dir': '~/kvmio-backups',
            'images_uri': 'qemu:///session',
        }
        variables.update(group_vars or {})
        return {'all': {'children': {'hypervisors': {'hosts': hosts, 'vars': variables}}}}

    # --- teardown ----------------------------------------------------------------------------

    def close_masters(self, control_dir=None):
        """Ends the controller's SSH master connections (ControlPersist) under ``control_dir``."""
        for sock in glob.glob(os.path.join(control_dir or self.control_dir, '**', '*'), recursive=True):
            if os.path.isdir(sock):
                continue
            subprocess.run(['ssh', '-o', 'ControlPath=%s' % sock, '-O', 'exit', 'lab'], capture_output=True,
                           check=False, timeout=30)

    def _lab_users(self):
        """Users of this lab: named PREFIXn with their home under ROOT (never anyone else's)."""
        found = []
        for entry in pwd.getpwall():
            rest = entry.pw_name[len(self.prefix):]
            if entry.pw_name.startswith(self.prefix) and rest.isdigit() and \
                    entry.pw_dir.startswith(self.root.rstrip('/') + '/'):
                found.append(entry.pw_name)
        return found

    def _stop_sshd(self):
        pid_file = os.path.join(self.root, 'sshd.pid')
        try:
            with open(pid_file, encoding='ascii') as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            return
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                cmdline = handle.read()
        except OSError:
            return
        if os.path.join(self.root, 'sshd_config').encode() in cmdline:    # ours, not a reused pid (a substring:
            # sshd rewrites its command line to "sshd: /usr/sbin/sshd -f CONFIG [listener] ...")
            os.kill(pid, signal.SIGTERM)
            for _attempt in range(50):
                if not os.path.exists('/proc/%d' % pid):
                    break
                time.sleep(0.05)

    @staticmethod
    def _remove_locks(users):
        """The lock files the modules left as the lab's users (kvmio.tuning's HostLock files are kept)."""
        uids = set()
        for user in users:
            try:
                uids.add(pwd.getpwnam(user).pw_uid)
            except KeyError:
                pass
        for directory in ('/run/lock', '/var/lock', tempfile.gettempdir()):
            for path in glob.glob(os.path.join(directory, 'kvmio-tuning-*.lock')):
                try:
                    if os.lstat(path).st_uid in uids:
                        os.unlink(path)
                except OSError:
                    pass

    def teardown(self):
        if os.path.isdir(self.control_dir):
            self.close_masters()
        users = self._lab_users()
        for user in users:
            subprocess.run(['pkill', '-KILL', '-u', user], capture_output=True, check=False)
        self._stop_sshd()
        self._remove_locks(users)
        for user in users:
            for _attempt in range(50):         # processes killed a moment ago may still be exiting
                if subprocess.run(['pgrep', '-u', user], capture_output=True, check=False).returncode:
                    break
                time.sleep(0.1)
            proc = subprocess.run(['userdel', user], capture_output=True, text=True, check=False)
            if proc.returncode not in (0, 6):
                print('userdel %s: %s' % (user, proc.stderr.strip()), file=sys.stderr)
        if os.path.isdir(self.root):
            shutil.rmtree(self.root)
        if self._made_run_sshd:
            others = subprocess.run(['pgrep', '-x', 'sshd'], capture_output=True, check=False).returncode == 0
            if not others:
                try:
                    os.rmdir('/run/sshd')
                except OSError:
                    pass
            self._made_run_sshd = False
        self.hosts = []
