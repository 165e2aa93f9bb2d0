# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The benchmark guest: a kernel and an initramfs (busybox, fio and its libraries, disk drivers).

Built once per kernel package from Debian packages (``apt-get download``, read with ``dpkg-deb``;
nothing is installed and nothing from a package runs on the hypervisor) into a root-only cache
directory, and verified by content hash every time it is used. Reusable::

    image = guest_image()                              # GuestImage(kernel=..., initrd=..., buses=...)
    kernel, initrd = stage_guest_image(image, run_dir)  # world-readable copies QEMU can open

Boot it with direct kernel boot and a serial console, kernel command line ``console=ttyS0 quiet
kvmio.bus=virtio|scsi|sata|ide`` (which drivers to load) and optionally ``kvmio.jobs=`` (base64 of fio
job lines, see ``_fio.job_lines``) and ``kvmio.hold=1`` (keep running after the jobs instead of powering
off). The console then shows ``KVMIO-BOOTED``, ``KVMIO-DISK name=vdX write_cache=... path=...``, each
job between ``KVMIO-BEGIN``/``KVMIO-END`` and ``KVMIO-DONE``; ``_fio.parse_console`` reads it.

The pure parts (ELF reading, module order, cpio, /init) are in ``_initramfs``.
"""

from __future__ import annotations

import fcntl
import glob
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field

from ._backup import write_atomic
from ._errors import KvmioError
from ._initramfs import (BUS_DRIVERS, BUS_MODULES, DEFAULT_CACHE_DIR, DEFAULT_KERNEL_PACKAGE, INIT_SCRIPT,
                         TOOL_PACKAGES, ElfError, cpio_archive, cpio_names, depends_names, elf_dynamic,
                         elf_interpreter, init_script, modinfo, module_load_order, module_name)
from ._trusted_files import trusted_directory

# Where the dynamic loader of an x86_64 Debian system looks (the guest gets the same layout).
LIBRARY_DIRS = ('/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/lib64', '/usr/lib64', '/lib', '/usr/lib')
# Module directories of a kernel package that hold the disk drivers and what they depend on.
MODULE_DIRS = ('kernel/drivers/virtio/', 'kernel/drivers/block/', 'kernel/drivers/scsi/', 'kernel/drivers/ata/',
               'kernel/lib/', 'kernel/crypto/', 'kernel/arch/x86/crypto/', 'kernel/block/')
MANIFEST_IN_INITRD = 'etc/kvmio-guest.json'
BUILDER_VERSION = 2
MAX_ROUNDS = 8
MAX_INITRD = 1 << 30
# Changes to what goes into the guest (the /init, the drivers) change this, and a cached guest is rebuilt.
RECIPE = hashlib.sha256(('%d\n%s\n%r' % (BUILDER_VERSION, INIT_SCRIPT, sorted(BUS_MODULES.items()))).encode()
                        ).hexdigest()[:16]


class GuestImageError(KvmioError):
    """The benchmark guest cannot be built or used."""


@dataclass(frozen=True)
class GuestImage:
    kernel: str
    initrd: str
    kernel_version: str | None = None
    buses: tuple = ()                     # buses whose guest drivers the initrd carries
    sha256: dict = field(default_factory=dict)
    source: str = 'built'                 # built | cache | user
    packages: dict = field(default_factory=dict)

    def as_dict(self):
        facts = asdict(self)
        facts['buses'] = list(self.buses)
        return facts


def process_runner():
    """``run(argv, cwd=None) -> (rc, stdout, stderr)`` for use outside a module."""
    def run(argv, cwd=None):
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr
    return run


def module_process_runner(module):
    def run(argv, cwd=None):
        return module.run_command(argv, cwd=cwd, expand_user_and_vars=False)
    return run


# --- files ---------------------------------------------------------------------------------------

def private_directory(path):
    """Creates ``path`` (0700) or checks that nobody but root or the running user can change it, nor
    any directory above it (the rule of ``_trusted_files``, as for backups)."""
    return trusted_directory(path, 'the guest cache directory', create=True, mode=0o700)


def _read_private(path, limit):
    """Bytes of a regular file we own, opened without following a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > limit:
            raise GuestImageError('%s is not a regular file of ours (or is too large)' % path)
        with os.fdopen(os.dup(fd), 'rb') as handle:
            return handle.read(limit + 1)
    finally:
        os.close(fd)


def file_sha256(path, follow=True):
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | (0 if follow else os.O_NOFOLLOW))
    with os.fdopen(fd, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


# --- Debian packages ---------------------------------------------------------------------------

def deb_members(deb, wanted):
    """({path: bytes}, {path: symlink target}) of the members of a .deb whose path ``wanted(path)``
    accepts. Paths are absolute ('/usr/bin/fio'); nothing is written to disk, so hostile names in a
    package cannot land anywhere."""
    proc = subprocess.Popen(['dpkg-deb', '--fsys-tarfile', deb], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    files, links = {}, {}
    try:
        with tarfile.open(fileobj=proc.stdout, mode='r|') as archive:
            for member in archive:
                path = '/' + member.name.lstrip('./')
                if not wanted(path):
                    continue
                if member.issym():
                    links[path] = member.linkname
                elif member.isfile():
                    files[path] = archive.extractfile(member).read()
    except tarfile.TarError as err:
        proc.kill()
        raise GuestImageError('cannot read package %s: %s' % (deb, err)) from None
    finally:
        err = proc.stderr.read().decode('utf-8', errors='replace')
        proc.stdout.close()
        proc.stderr.close()
        rc = proc.wait()
    if rc != 0:
        raise GuestImageError('dpkg-deb cannot read %s: %s' % (deb, err.strip()))
    return files, links


def _resolve_link(path, links, files, hops=10):
    for _hop in range(hops):
        if path in files:
            return path
        if path not in links:
            return None
        target = links[path]
        path = os.path.normpath(target if target.startswith('/') else os.path.join(os.path.dirname(path), target))
    return None


class _Packages:
    """``apt-get download`` into a directory; package fields with ``dpkg-deb -f``."""

    def __init__(self, run_command, directory, update_lists=True):
        self.run = run_command
        self.directory = directory
        self.update_lists = update_lists
        self.updated = False
        self.debs = {}           # package name -> .deb path

    def download(self, names):
        names = [n for n in names if n not in self.debs]
        if not names:
            return
        rc, out, err = self.run(['apt-get', 'download', '-q', '--'] + names, cwd=self.directory)
        if rc != 0 and self.update_lists and not self.updated:
            # Stale package lists name versions the mirror no longer has: refresh them once.
            self.updated = True
            self.run(['apt-get', 'update', '-q'])
            rc, out, err = self.run(['apt-get', 'download', '-q', '--'] + names, cwd=self.directory)
        if rc != 0:
            raise GuestImageError('apt-get download %s failed: %s. The benchmark guest is built from Debian '
                                  'packages; without a package mirror, build it elsewhere and give kernel and '
                                  'initrd' % (' '.join(names), (err or out).strip()[-500:]))
        for name in names:
            found = sorted(glob.glob(os.path.join(self.directory, glob.escape(name) + '_*.deb')))
            if not found:
                raise GuestImageError('apt-get download %s left no package file' % name)
            self.debs[name] = found[-1]

    def field(self, name, key):
        rc, out, err = self.run(['dpkg-deb', '-f', self.debs[name], key])
        if rc != 0:
            raise GuestImageError('cannot read %s of package %s: %s' % (key, name, err.strip()))
        return out.strip()

    def installed(self, names):
        rc, out, _err = self.run(['dpkg-query', '-W', '-f', '${Package} ${db:Status-Abbrev}\n', '--'] + list(names))
        del rc   # 1 when some are unknown: the known ones are still listed
        return {line.split()[0].split(':')[0] for line in out.splitlines() if line.split()[1:2] == ['ii']}


# --- building -----------------------------------------------------------------------------------

def _decompress_module(path, data):
    if path.endswith('.xz'):
        return lzma.decompress(data)
    if path.endswith('.gz'):
        return gzip.decompress(data)
    if path.endswith('.zst'):
        raise GuestImageError('kernel module %s is zstd-compressed; use a kernel package with xz, gzip or '
                              'uncompressed modules' % path)
    return data


def _kernel_parts(packages, kernel_package):
    """(kernel version, vmlinuz bytes, {module name: (path, bytes)}, built-in module names, package, version)."""

    def wanted(path):
        return path.startswith('/boot/vmlinuz-') or (path.startswith('/lib/modules/') and (
            path.endswith('/modules.builtin') or any('/' + d in path for d in MODULE_DIRS)))

    packages.download([kernel_package])
    image_package = kernel_package
    files, _links = deb_members(packages.debs[image_package], wanted)
    if not any(p.startswith('/boot/vmlinuz-') for p in files):
        # A metapackage (linux-image-amd64): its first linux-image-* dependency is the kernel.
        deps = [d for d in depends_names(packages.field(kernel_package, 'Depends')) if d.startswith('linux-image-')]
        if not deps:
            raise GuestImageError('package %s has no kernel image and depends on none' % kernel_package)
        image_package = deps[0]
        packages.download([image_package])
        files, _links = deb_members(packages.debs[image_package], wanted)
    kernels = [p for p in files if p.startswith('/boot/vmlinuz-')]
    if len(kernels) != 1:
        raise GuestImageError('package %s has %d kernel images, expected one' % (image_package, len(kernels)))
    version = kernels[0][len('/boot/vmlinuz-'):]
    modules = {}
    for path, data in files.items():
        if path.startswith('/lib/modules/%s/kernel/' % version) and '.ko' in path.rsplit('/', 1)[-1]:
            modules[module_name(path)] = (path, data)
    builtin = set()
    for line in files.get('/lib/modules/%s/modules.builtin' % version, b'').decode('utf-8', 'replace').splitlines():
        if line.strip():
            builtin.add(module_name(line.strip()))
    return version, files[kernels[0]], modules, builtin, image_package, packages.field(image_package, 'Version')


def _order_modules(modules, builtin):
    """({bus: load order}, {name: decompressed bytes}, buses supported)."""
    depends, data = {}, {}
    pending = [name for names in BUS_MODULES.values() for name in names]
    while pending:
        name = pending.pop()
        if name in depends or name not in modules:
            continue
        path, raw = modules[name]
        data[name] = _decompress_module(path, raw)
        try:
            info = modinfo(data[name])
        except ElfError as err:
            raise GuestImageError('kernel module %s is unreadable: %s' % (path, err)) from None
        depends[name] = [module_name(d) for d in info.get('depends', '').split(',') if d]
        pending.extend(depends[name])
    missing = sorted({d for deps in depends.values() for d in deps} - set(depends) - builtin)
    if missing:
        raise GuestImageError('kernel modules needed by the disk drivers are not where expected: %s'
                              % ', '.join(missing))
    buses = tuple(bus for bus, driver in BUS_DRIVERS.items() if driver in depends or driver in builtin)
    orders = {bus: module_load_order(BUS_MODULES[bus], depends) for bus in buses}
    return orders, data, buses


class _Libraries:
    """Finds a binary's shared libraries (what ``ldd`` lists) in downloaded packages or on this host."""

    def __init__(self):
        self.files, self.links = {}, {}

    def add_package(self, files, links):
        self.files.update(files)
        self.links.update(links)

    def find(self, soname, runpath, origin):
        dirs = [d.replace('$ORIGIN', origin).replace('${ORIGIN}', origin) for d in runpath] + list(LIBRARY_DIRS)
        for directory in dirs:
            path = os.path.normpath(os.path.join(directory, soname))
            staged = _resolve_link(path, self.links, self.files)
            if staged is not None:
                return path, self.files[staged]
            if os.path.isfile(path):
                with open(os.path.realpath(path), 'rb') as handle:
                    return path, handle.read()
        return None

    def closure(self, roots):
        """({guest path: bytes} of every library ``roots`` ({path: bytes}) need, {soname: needed by})."""
        placed, missing, seen = {}, {}, set()
        queue = list(roots.items())
        while queue:
            path, data = queue.pop()
            try:
                needed, runpath = elf_dynamic(data)
                interp = elf_interpreter(data)
            except ElfError as err:
                raise GuestImageError('%s is not a usable ELF file: %s' % (path, err)) from None
            if interp and interp not in placed:
                found = self.find(os.path.basename(interp), [os.path.dirname(interp)], os.path.dirname(path))
                if found is None:
                    missing[interp] = path
                else:
                    placed[interp] = found[1]
            for soname in needed:
                if soname in seen:
                    continue
                found = self.find(soname, runpath, os.path.dirname(path))
                if found is None:
                    missing.setdefault(soname, path)
                    continue
                seen.add(soname)
                placed[found[0]] = found[1]
                queue.append(found)
        return placed, missing


def _tools(packages, libraries):
    """(busybox bytes, fio bytes, {library path: bytes}); downloads library packages until fio's
    libraries are all found, breadth first over the Depends of what was downloaded."""
    packages.download(list(TOOL_PACKAGES))
    busybox, _links = deb_members(packages.debs['busybox-static'], lambda p: p == '/bin/busybox')
    fio, _links = deb_members(packages.debs['fio'], lambda p: p == '/usr/bin/fio')
    if '/bin/busybox' not in busybox or '/usr/bin/fio' not in fio:
        raise GuestImageError('busybox-static or fio has no binary where expected (/bin/busybox, /usr/bin/fio)')
    frontier = ['fio']
    for _round in range(MAX_ROUNDS):
        placed, missing = libraries.closure({'/usr/bin/fio': fio['/usr/bin/fio']})
        if not missing:
            return busybox['/bin/busybox'], fio['/usr/bin/fio'], placed
        candidates = []
        for name in frontier:
            candidates.extend(d for d in depends_names(packages.field(name, 'Depends'))
                              if d.startswith('lib') and d not in packages.debs and d not in candidates)
        installed = packages.installed(candidates) if candidates else set()
        frontier = [c for c in candidates if c not in installed]
        if not frontier:
            break
        packages.download(frontier)
        for name in frontier:
            libraries.add_package(*deb_members(packages.debs[name], lambda p: '/lib' in p and '.so' in p))
    raise GuestImageError('fio needs libraries found neither on this host nor in the packages it depends on: %s'
                          % ', '.join('%s (for %s)' % item for item in sorted(missing.items())))


def build_initrd(busybox, fio, libraries, module_orders, module_data, manifest):
    """The initramfs (an uncompressed cpio: under TCG the guest kernel would spend more seconds
    inflating it than QEMU spends loading the larger file), byte for byte the same for the same
    inputs. ``module_orders``: {bus: module names in load order}."""
    lib_dirs = sorted({os.path.dirname(p) for p in libraries})
    files = {
        'init': (0o755, init_script(lib_dirs).encode('utf-8')),
        'bin/busybox': (0o755, busybox),
        'usr/bin/fio': (0o755, fio),
        MANIFEST_IN_INITRD: (0o644, json.dumps(manifest, sort_keys=True).encode('utf-8')),
    }
    for bus, order in module_orders.items():
        files['etc/kvmio-modules-%s' % bus] = (0o644, ''.join('%s\n' % n for n in order).encode('utf-8'))
        for name in order:
            files['lib/modules/kvmio/%s.ko' % name] = (0o644, module_data[name])
    for path, data in libraries.items():
        files[path.lstrip('/')] = (0o755, data)
    return cpio_archive(files, devices={'dev/console': (5, 1), 'dev/null': (1, 3)})


def _build(cache_dir, run_command, kernel_package, update_lists):
    work = tempfile.mkdtemp(prefix='build-', dir=cache_dir)
    try:
        os.chmod(work, 0o755)      # apt-get download drops to the _apt user, who must write here
        packages = _Packages(run_command, work, update_lists)
        version, vmlinuz, modules, builtin, image_package, image_version = _kernel_parts(packages, kernel_package)
        orders, module_data, buses = _order_modules(modules, builtin)
        if 'virtio' not in buses:
            raise GuestImageError('kernel %s has no virtio_blk driver' % version)
        busybox, fio, libraries = _tools(packages, _Libraries())
        versions = {name: packages.field(name, 'Version') for name in sorted(packages.debs)}
        versions[image_package] = image_version
        manifest = {'recipe': RECIPE, 'kernel_version': version, 'buses': list(buses), 'packages': versions}
        initrd = build_initrd(busybox, fio, libraries, orders, module_data, manifest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stem = os.path.join(cache_dir, _safe_name(kernel_package))
    write_atomic(stem + '.vmlinuz', vmlinuz)
    write_atomic(stem + '.initrd', initrd)
    manifest.update({'kernel_package': kernel_package,
                     'sha256': {'kernel': hashlib.sha256(vmlinuz).hexdigest(),
                                'initrd': hashlib.sha256(initrd).hexdigest()}})
    write_atomic(stem + '.json', json.dumps(manifest, indent=1, sort_keys=True).encode('utf-8'))
    return _image(stem, manifest, 'built')


def _safe_name(package):
    if not package or not all(c.isalnum() or c in '+-.' for c in package) or package.startswith(('-', '.')):
        raise GuestImageError("kernel_package '%s' is not a Debian package name" % package)
    return package


def _image(stem, manifest, source):
    return GuestImage(kernel=stem + '.vmlinuz', initrd=stem + '.initrd', kernel_version=manifest['kernel_version'],
                      buses=tuple(manifest['buses']), sha256=dict(manifest['sha256']), source=source,
                      packages=dict(manifest.get('packages', {})))


def _cached(stem, kernel_package):
    """The cached guest if its manifest matches this recipe and both files match their hashes."""
    try:
        manifest = json.loads(_read_private(stem + '.json', 1 << 20))
        if manifest.get('recipe') != RECIPE or manifest.get('kernel_package') != kernel_package:
            return None
        for key, suffix in (('kernel', '.vmlinuz'), ('initrd', '.initrd')):
            st = os.lstat(stem + suffix)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
                return None
            if file_sha256(stem + suffix, follow=False) != manifest['sha256'][key]:
                return None
        return _image(stem, manifest, 'cache')
    except (OSError, ValueError, KeyError, TypeError, GuestImageError):
        return None


def guest_image(cache_dir=DEFAULT_CACHE_DIR, run_command=None, kernel_package=DEFAULT_KERNEL_PACKAGE, refresh=False,
                update_lists=True):
    """The benchmark guest for ``kernel_package``: from the cache when it is there and intact, else
    built (``refresh`` rebuilds with the newest packages). One build at a time per cache directory.
    ``run_command(argv, cwd=None)``: default ``process_runner()``."""
    run_command = run_command or process_runner()
    private_directory(cache_dir)
    stem = os.path.join(cache_dir, _safe_name(kernel_package))
    fd = os.open(os.path.join(cache_dir, '.lock'), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not refresh:
            image = _cached(stem, kernel_package)
            if image is not None:
                return image
        return _build(cache_dir, run_command, kernel_package, update_lists)
    finally:
        os.close(fd)


def user_guest_image(kernel, initrd):
    """A kernel and initrd the user names: the initrd must be one this module built (it carries the
    /init that runs the jobs, and says which buses its drivers cover)."""
    for what, path in (('kernel', kernel), ('initrd', initrd)):
        if not os.path.isfile(path):
            raise GuestImageError('%s %s is not a file' % (what, path))
    try:
        with open(initrd, 'rb') as handle:
            head = handle.read(2)
            handle.seek(0)
            raw = handle.read(MAX_INITRD + 1)
        if head == b'\x1f\x8b':
            raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(MAX_INITRD + 1)
        manifest = json.loads(cpio_names(raw)[MANIFEST_IN_INITRD][1])
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise GuestImageError('initrd %s was not built by kvm_io_bench (%s): build the guest on a host with a '
                              'package mirror (mode=guest) and copy its kernel and initrd' % (initrd, err)) from None
    return GuestImage(kernel=kernel, initrd=initrd, kernel_version=manifest.get('kernel_version'),
                      buses=tuple(manifest.get('buses', ())), source='user', packages=manifest.get('packages', {}),
                      sha256={'kernel': file_sha256(kernel), 'initrd': file_sha256(initrd)})


def stage_guest_image(image, directory):
    """Copies kernel and initrd into ``directory`` (mode 0644, for QEMU running as another user) and
    checks the copies against the image's hashes; returns (kernel path, initrd path)."""
    staged = []
    for key, path, name in (('kernel', image.kernel, 'vmlinuz'), ('initrd', image.initrd, 'initrd.img')):
        target = os.path.join(directory, name)
        with open(path, 'rb') as source:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, 'wb') as handle:
                shutil.copyfileobj(source, handle, 1 << 20)
        os.chmod(target, 0o644)
        if image.sha256.get(key) and file_sha256(target, follow=False) != image.sha256[key]:
            raise GuestImageError('%s %s changed while it was copied (hash mismatch); refusing to boot it' % (key, path))
        staged.append(target)
    return tuple(staged)


def verify_staged(image, staged):
    """Raises when a staged copy no longer matches the image's hashes: QEMU runs as another user that
    libvirt gives the files to for the length of a boot, and a later boot must not trust them blindly."""
    for key, path in zip(('kernel', 'initrd'), staged):
        if image.sha256.get(key) and file_sha256(path, follow=False) != image.sha256[key]:
            raise GuestImageError('the staged %s %s changed between boots (hash mismatch); refusing to boot it'
                                  % (key, path))
