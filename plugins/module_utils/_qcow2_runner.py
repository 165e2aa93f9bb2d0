# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""qcow2_create's flow, for one image or a list: lock, read, plan every image (pure, ``_image_plan``),
then apply the plans one by one.

Reading trusts nothing an image says: each file is opened here (``_image_chain``), its format comes
from the domains that use it (``_image_users``, read once per run), and qemu-img gets descriptors
and explicit formats. Writing goes to a private directory beside the image (``_image_workdir``);
the result takes the image's name by ``link`` (create: fails rather than overwrite) or by an
atomic rename after ``qemu-img compare`` and a hard-link backup of the original (convert).
Every refusal happens while planning, so a run that refuses one image changes none.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import re
import resource
import stat
from contextlib import ExitStack
from dataclasses import dataclass, field

from ._errors import ApplyError, KvmioError, LibvirtUnavailable, PlanError, QemuImgError
from ._image_chain import Chain, head_format, image_node, json_spec, kind_of, layer_from_fd, not_an_image, \
    open_file, printable, qemu_holds, read_head, resolve_relative, two_meanings, walk_chain
from ._image_plan import ACTION_DONE, FORMATS, PREALLOCATION_CHOICES, ImagePlan, WantedImage, check_disk_image, \
    check_users, decide_format, effective_preallocation, header_info, human_size, image_facts, image_size, \
    parse_size, plan_image, planned_facts, validate_wanted, whole_sectors
from ._image_users import read_image_uses, running_domains
from ._image_workdir import WorkDir, backup_name, entry_stat, fsync_dir, link_backup, open_directory, \
    remove_dead_workdirs, same_file
from ._libvirt import LIBVIRT_ARGUMENT_SPEC
from ._lock import LOCK_ARGUMENT_SPEC, HostLock
from ._parallel import map_threads
from ._qemu_img import QemuImg, module_runner, subprocess_runner
from ._result_detail import RESULT_DETAIL_ARGUMENT_SPEC, shape_entries
from ._storage_probe import PROBE_TIMEOUT as READ_TIMEOUT, SHARED_FILESYSTEMS, BoundedReads, filesystem_of, \
    probe_odirect_fd, read_mounts
from ._trusted_files import UntrustedPath, resolve_trusted_links

# Reading an image (qemu-img map) takes milliseconds; a qemu-img that takes this long is stuck.
PROBE_TIMEOUT = 120
# What a lock on QEMU's lock bytes (100-299) means: QEMU takes them on every image it opens, but any
# process can lock those bytes, and a QEMU run with file.locking=off takes none.
LOCK_HOLDER = 'a QEMU process, or any other process that locks bytes 100-299 of the file as QEMU does'
# qemu-img map processes run at once while a list is read (they mostly wait on the kernel).
MAP_WORKERS = 4

# The options of one image: the single form takes them at the top level, the list form per entry
# (an entry's unset option falls back to the top-level value).
IMAGE_OPTIONS = {
    'state': {'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
    'size': {'type': 'str'},
    'preallocation': {'type': 'str', 'choices': list(PREALLOCATION_CHOICES), 'default': 'metadata'},
    'cluster_size': {'type': 'str'},
    'lazy_refcounts': {'type': 'bool', 'default': False},
    'extended_l2': {'type': 'bool', 'default': False},
    'compat': {'type': 'str', 'choices': ['0.10', '1.1'], 'default': '1.1'},
    'backing_file': {'type': 'str'},
    'backing_format': {'type': 'str', 'choices': list(FORMATS), 'default': 'qcow2'},
    'source_format': {'type': 'str', 'choices': ['auto'] + list(FORMATS), 'default': 'auto'},
    'resize': {'type': 'str', 'choices': ['keep', 'grow'], 'default': 'keep'},
    'convert': {'type': 'bool', 'default': False},
    'force': {'type': 'bool', 'default': False},
    'block_device_attributes': {'type': 'bool', 'default': False},
}
FILE_OPTIONS = {'owner': {'type': 'str'}, 'group': {'type': 'str'}, 'mode': {'type': 'raw'}}
# Common file arguments other than owner, group and mode, applied by Ansible's own helpers.
_OTHER_FILE_ARGS = ('seuser', 'serole', 'setype', 'selevel', 'attributes')
_OCTAL_RE = re.compile(r'^0?[0-7]{1,4}$')


def argument_spec():
    spec = dict(LIBVIRT_ARGUMENT_SPEC)
    spec['path'] = {'type': 'path'}
    spec.update(IMAGE_OPTIONS)
    entry = {'path': {'type': 'path', 'required': True}}
    entry.update({key: {k: v for k, v in option.items() if k != 'default'} for key, option in IMAGE_OPTIONS.items()})
    entry.update(FILE_OPTIONS)
    spec['images'] = {'type': 'list', 'elements': 'dict', 'options': entry}
    spec['allowed_roots'] = {'type': 'list', 'elements': 'path', 'default': []}
    spec.update(LOCK_ARGUMENT_SPEC)
    spec.update(RESULT_DETAIL_ARGUMENT_SPEC)
    return spec


# What result_detail=summary keeps of each entry of ``images`` (the list form).
SUMMARY_IMAGE_KEYS = ('path', 'action', 'changed', 'drift', 'backup_file', 'cleaned')


_NOTHING_CHANGED = re.compile(r'[;,.]?\s*nothing was (?:changed|done)\.?\s*$', re.IGNORECASE)


def _list_failure(message, job, results, later):
    """The message of a list that failed while applying ``job``: its own error, then exactly what the
    run did. The error's own "nothing was changed" is about that image alone; left as it is, it would
    read as if the images changed before it were untouched too."""
    own, untouched = _NOTHING_CHANGED.subn('', message)
    done = ', '.join('%s (%s)' % (r['path'], r['action']) for r in results if r['changed'])
    return '%s%s. Changed before it: %s; not attempted: %s' % (
        own, '; %s was left as it was' % job.label if untouched else '', done or 'none',
        ', '.join(j.label for j in later) or 'none')


def _counts(results):
    """How many images the list had, changed, and took each action."""
    counts = {'images': len(results), 'changed': sum(1 for r in results if r['changed'])}
    for result in results:
        counts[result['action']] = counts.get(result['action'], 0) + 1
    return counts


MODULE_OPTIONS = {'add_file_common_args': True, 'mutually_exclusive': [('path', 'images')],
                  'required_one_of': [('path', 'images')]}


@dataclass
class Request:
    """One image to handle: ``path`` absolute as given, ``options`` every IMAGE_OPTIONS key and the file options."""

    index: int | None
    path: str
    options: dict


def requests_of(params):
    file_defaults = {key: params.get(key) for key in FILE_OPTIONS}
    if params.get('images') is None:
        options = {key: params[key] for key in IMAGE_OPTIONS}
        options.update(file_defaults)
        return [Request(None, os.path.abspath(params['path']), options)]
    found = []
    for index, entry in enumerate(params['images']):
        options = {key: entry[key] if entry.get(key) is not None else params[key] for key in IMAGE_OPTIONS}
        options.update({key: entry[key] if entry.get(key) is not None else file_defaults[key] for key in FILE_OPTIONS})
        found.append(Request(index, os.path.abspath(entry['path']), options))
    return found


@dataclass
class Job:
    """Everything this run learnt and decided about one image."""

    request: Request
    real: str
    dir_path: str
    name: str
    dir_fd: int = -1
    st: os.stat_result | None = None   # lstat of the image's real name, None when it does not exist
    top: object = None                 # Layer of the existing image, open
    chain: object = None               # its whole Chain (convert, grow)
    backing: object = None             # Chain of a requested backing_file
    fmt: str | None = None
    format_source: str | None = None
    uses: list | None = None                       # known users (None: libvirt could not be asked)
    unknown_users: list = field(default_factory=list)   # why other users may exist unseen
    before: dict | None = None
    wanted: WantedImage | None = None
    plan: ImagePlan = field(default_factory=lambda: ImagePlan('none'))
    attrs: dict = field(default_factory=dict)      # {'mode'/'uid'/'gid': wanted value}
    attrs_differ: bool = False
    cleaned: list = field(default_factory=list)
    backup: str | None = None

    @classmethod
    def of(cls, request, real):
        """``real``: the request's path with its (trusted) links resolved."""
        return cls(request, real, os.path.dirname(real), os.path.basename(real))

    @property
    def path(self):
        return self.request.path

    @property
    def label(self):
        return printable(self.request.path)

    def close(self):
        for chain in (self.chain, self.backing):
            if chain is not None:
                chain.close()
        if self.top is not None:
            self.top.close()


def _raise_fd_limit():
    """A list of images holds a descriptor per image file and lock: make room for a few thousand."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass


class Qcow2Run:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.qemu_img = QemuImg(module_runner(module))
        # Reads overlap in threads: those use plain subprocess, which is safe in threads (Ansible's
        # run_command forks with a preexec_fn, which is not).
        self.reader = QemuImg(subprocess_runner())
        self.roots = [os.path.realpath(r) for r in self.params['allowed_roots']]
        self._uses = None
        self._uses_read = False
        self._dirs = {}
        self._dir_problems = {}
        self.mounts = None
        # Every read of an image, a directory or another domain's chain runs bounded in time: a hung
        # NFS or FUSE mount gives an error or unknown users, never a run that hangs holding its locks.
        self.reads = BoundedReads(timeout=READ_TIMEOUT)

    # --- the run --------------------------------------------------------------------------------

    def run(self):
        _raise_fd_limit()
        requests = requests_of(self.params)
        reals = {}
        jobs = []
        for request in requests:
            job = Job.of(request, self._resolve(request))
            if job.real in reals:
                raise PlanError('%s and %s are the same image; list each image once'
                                % (printable(reals[job.real]), printable(request.path)))
            reals[job.real] = request.path
            jobs.append(job)
        with ExitStack() as stack:
            for real in sorted(reals):                  # one order for every run: no deadlock between lists
                stack.enter_context(HostLock(printable(real), self.params['lock_timeout'], remove=True))
            stack.callback(self._close, jobs)
            for job in jobs:                            # open and check every image (no qemu-img yet)
                self._guarded(job, self._open_job)
            self._read_facts(jobs)                      # qemu-img map for all of them, overlapping
            for job in jobs:                            # then decide, each refusal before any change
                self._guarded(job, self._plan_job)
            results = []
            for number, job in enumerate(jobs):
                try:
                    self._apply(job)
                except KvmioError as err:
                    if len(jobs) == 1:
                        raise
                    raise ApplyError(_list_failure(err.msg, job, results, jobs[number + 1:]),
                                     images=results, failed_image=job.label, **err.details) from None
                except OSError as err:
                    raise ApplyError(_list_failure('cannot %s %s: %s' % (job.plan.action, job.label, err.strerror),
                                                   job, results, jobs[number + 1:]),
                                     images=results, failed_image=job.label) from None
                results.append(self._result(job))
        if self.params.get('images') is None:
            return results[0]
        outcome = {'changed': any(r['changed'] for r in results), 'counts': _counts(results)}
        if self.module._diff:
            outcome['diff'] = [r.pop('diff') for r in results]
        outcome['images'] = shape_entries(results, self.params['result_detail'], SUMMARY_IMAGE_KEYS)
        if self.params['result_detail'] == 'summary':
            # Ansible echoes every option back (invocation.module_args), each images entry with all its
            # suboptions, most of them null: about 350 bytes per image. Echo only what each entry sets.
            echoed = dict(self.params, images=[{k: v for k, v in entry.items() if v is not None}
                                               for entry in self.params['images']])
            outcome['invocation'] = {'module_args': echoed}
        return outcome

    def _close(self, jobs):
        for job in jobs:
            job.close()
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs = {}

    # --- reading and planning -------------------------------------------------------------------

    def _directory(self, path, label):
        if path not in self._dirs:
            try:
                problems = []
                self._dirs[path] = open_directory(path, problems)
                self._dir_problems[path] = problems[0] if problems else None
            except FileNotFoundError:
                raise PlanError('the directory of %s, %s, does not exist' % (label, printable(path))) from None
            except OSError as err:
                raise PlanError('cannot open the directory of %s, %s: %s'
                                % (label, printable(path), err.strerror)) from None
        return self._dirs[path]

    def _uses_of(self, ident):
        """(the domains known to use the file ``ident`` (ImageUse list; None when libvirt cannot be asked),
        why others may use it unseen: a list of texts naming the disks whose chains could not be read)."""
        if not self._uses_read:
            self._uses_read = True
            try:
                self._uses = read_image_uses(self.params['uri'], self.reads)
            except LibvirtUnavailable as err:
                self._uses = None
                self.module.warn('cannot ask libvirt which domains use the images (%s); formats are read from the '
                                 'images themselves, and conversions and removals need source_format or force=true'
                                 % err.msg)
            else:
                for why in self._uses.unknown:
                    self.module.warn('the backing chain of %s could not be read to its end, so the images it may '
                                     'use are not known; conversions and removals need source_format or force=true'
                                     % why)
        if self._uses is None:
            return None, []
        return self._uses.of(ident), list(self._uses.unknown)

    def _check_root(self, real, what):
        if self.roots and not any(real == r or real.startswith(r.rstrip('/') + '/') for r in self.roots):
            raise PlanError('%s (resolving to %s) is outside allowed_roots (%s); nothing was done'
                            % (what, printable(real), ', '.join(printable(r) for r in self.roots)))

    def _guarded(self, job, step):
        """Runs a planning step; an OSError becomes a PlanError naming the image."""
        try:
            step(job)
        except OSError as err:
            job.close()
            raise PlanError('cannot read %s: %s; nothing was done' % (job.label, err.strerror)) from None
        except BaseException:
            job.close()
            raise
        return job

    def _bounded(self, path, what, func, *args):
        """func(*args) run bounded in time (``self.reads``); a read that hangs is a PlanError naming ``what``."""
        done, value = self.reads.call(path, func, *args)
        if not done:
            raise PlanError('%s: %s; nothing was done' % (what, self.reads.why(path, value)))
        return value

    def _resolve(self, request):
        """The request's path with its links resolved, each followed only when it is trusted: owned by
        root or this user, in directories only they can change (``_trusted_files``). A link another user
        planted at the image's name, or as a directory on the way, would otherwise lead root's chown,
        chmod, conversion or removal to any file."""
        label = printable(request.path)
        try:
            return self._bounded(request.path, label, resolve_trusted_links, request.path, label)
        except UntrustedPath as err:
            raise PlanError('%s is not followed: %s (only a link that root or the user running the module made, in '
                            'directories only they can change, is followed); nothing was done'
                            % (label, err.details.get('untrusted', err.msg))) from None
        except OSError as err:
            raise PlanError('cannot resolve %s: %s; nothing was done' % (label, err.strerror)) from None

    def _open_job(self, job):
        self._check_root(job.real, job.label)
        if os.path.islink(job.path) and not os.path.exists(job.path):
            raise PlanError('%s is a symbolic link to %s, which does not exist; nothing was done'
                            % (job.label, printable(job.real)))
        opened = self._bounded(job.real, job.label, self._open_entry, job)
        if opened is not None:
            self._read_existing(job, *opened)

    def _open_entry(self, job):
        """The I/O of opening an image (bounded by the caller): its directory, its entry, the file itself
        and its first bytes. Returns (fd, fstat, first bytes), or None when the image does not exist."""
        job.dir_fd = self._directory(job.dir_path, job.label)
        job.st = entry_stat(job.dir_fd, job.name)
        if job.st is None:
            return None
        kind = kind_of(job.st.st_mode)
        if kind not in ('file', 'block'):
            raise not_an_image(job.path, kind)
        try:
            fd, fst = open_file(job.name, nofollow=True, dir_fd=job.dir_fd)
        except FileNotFoundError:
            raise PlanError('%s disappeared while this run read it; nothing was done' % job.label) from None
        if not same_file(fst, job.st):
            os.close(fd)
            raise PlanError('%s changed while this run read it; nothing was done' % job.label)
        try:
            return fd, fst, read_head(fd)
        except BaseException:
            os.close(fd)
            raise

    def _read_facts(self, jobs):
        """``before`` facts of every existing image; the qemu-img processes overlap (MAP_WORKERS at a time)."""
        existing = [job for job in jobs if job.top is not None]
        try:
            facts = map_threads(lambda job: self._facts(job.top, self.reader), existing, workers=MAP_WORKERS)
        except BaseException:
            for job in existing:
                job.close()
            raise
        for job, before in zip(existing, facts):
            job.before = before

    def _plan_job(self, job):
        options = job.request.options
        st = job.st
        if options['state'] == 'absent':
            if job.top is not None:
                self._refuse_unsafe(job, 'remove')
                job.plan = ImagePlan('remove', reason='state=absent')
            return
        job.wanted = self._wanted(options)
        if job.wanted.backing_file:
            self._plan_backing(job)
        job.plan = plan_image(job.label, job.before, job.wanted, options['resize'], options['convert'])
        if job.plan.action == 'drift':
            self.module.warn('%s differs from the request in %s: %s'
                             % (job.label, ', '.join(sorted(job.plan.drift)), job.plan.reason))
        if job.plan.action in ('convert', 'grow'):
            self._refuse_unsafe(job, job.plan.action)
            job.chain = walk_chain(job.path, job.fmt, top=job.top)
            job.top = None                       # the chain owns it now
            for layer in job.chain.layers[1:]:
                self._check_root(layer.real, 'backing file %s of %s' % (printable(layer.path), job.label))
                if job.plan.action == 'convert' and not job.wanted.backing_file:
                    self._check_kept(job, layer)
        self._plan_attributes(job, st)

    def _check_kept(self, job, layer):
        """A conversion writes the backing file an image's header names into a new image; that name may be
        a guest's (a qcow2 header in a raw disk): it is kept only inside the image's own directory, or
        inside ``allowed_roots`` when they are set."""
        allowed = self.roots or [job.dir_path]
        if not any(layer.real == r or layer.real.startswith(r.rstrip('/') + '/') for r in allowed):
            raise PlanError('%s names %s as its backing file, outside %s; a conversion keeps such a backing file '
                            'only inside the directory of the image or allowed_roots (set allowed_roots to include '
                            'it, or backing_file to name it yourself); nothing was done'
                            % (job.label, printable(layer.real), ', '.join(printable(r) for r in allowed)))

    def _read_existing(self, job, fd, fst, head):
        try:
            found = head_format(head)
            job.uses, job.unknown_users = self._uses_of((fst.st_dev, fst.st_ino))
            job.fmt, job.format_source = decide_format(job.label, job.uses, job.request.options['source_format'],
                                                       found)
        except BaseException:
            os.close(fd)
            raise
        job.top = layer_from_fd(job.path, fd, fst, job.fmt, real=job.real)
        check_disk_image(job.label, job.fmt, job.top.size())
        header = job.top.header
        if header is not None and header.external_data_file:
            raise PlanError('%s has an external data file (%s); qcow2_create does not handle such images'
                            % (job.label, printable(header.data_file or '?')))
        if header is not None and header.encrypted:
            raise PlanError('%s is an encrypted qcow2 image; qcow2_create does not handle such images' % job.label)
        if header is not None and header.unknown_features:
            raise PlanError('%s uses qcow2 features this module does not know (incompatible feature bits %#x)'
                            % (job.label, header.incompatible))

    def _facts(self, layer, qemu_img=None):
        """image_facts of one open layer: the header this module parsed, and ``qemu-img map`` (opening no
        backing file) for the preallocation of a qcow2 image."""
        actual = layer.st.st_blocks * 512 if layer.kind == 'file' else None
        info = header_info(layer.fmt, layer.header, layer.backing_name, layer.size(), actual)
        extents = None
        if layer.fmt == 'qcow2':
            extents = (qemu_img or self.qemu_img).map_spec(Chain([layer]).spec(backing=True), printable(layer.path),
                                                           [layer.fd], timeout=PROBE_TIMEOUT)
        facts = image_facts(info, extents)
        for key in ('backing_file', 'backing_format'):
            if facts[key] is not None:
                facts[key] = printable(facts[key])
        return facts

    def _wanted(self, options):
        size = image_size(options['size']) if options['size'] else None
        cluster = parse_size(options['cluster_size'], 'cluster_size') if options['cluster_size'] else None
        wanted = WantedImage(size=size, preallocation=options['preallocation'], cluster_size=cluster,
                             lazy_refcounts=options['lazy_refcounts'], extended_l2=options['extended_l2'],
                             compat=options['compat'], backing_file=options['backing_file'],
                             backing_format=options['backing_format'] if options['backing_file'] else None)
        validate_wanted(wanted, self.qemu_img.version() if wanted.extended_l2 else None)
        return wanted

    def _plan_backing(self, job):
        """The requested backing file, followed and checked as QEMU will follow it (S5: inside allowed_roots)."""
        wanted = job.wanted
        name = wanted.backing_file
        path, other = resolve_relative(name, job.path, job.real)
        if other is not None:
            raise two_meanings(name, path, other, job.path)
        label = 'backing_file %s of %s' % (printable(name), job.label)
        try:
            # The link rule of the image's own path: the file the overlay shows its guest is the admin's.
            self._bounded(path, label, resolve_trusted_links, path, label)
        except UntrustedPath as err:
            raise PlanError('%s is not followed: %s; nothing was done' % (label, err.details.get('untrusted', err.msg))) \
                from None
        except OSError:
            pass                    # a missing file or directory: the walk below says so
        try:
            job.backing = walk_chain(path, wanted.backing_format)
        except PlanError as err:
            raise PlanError('backing_file %s of %s: %s; nothing was done' % (printable(name), job.label, err.msg)) \
                from None
        layers = job.backing.layers
        for layer in layers:
            self._check_root(layer.real, 'backing file %s of %s' % (printable(layer.path), job.label))
            if layer.real == job.real:
                raise PlanError('%s cannot be a backing file of itself' % job.label)
        base = layers[0]
        uses = self._uses_of(base.ident)[0] or []
        readers = sorted({u.domain for u in uses if u.declared_format != wanted.backing_format})
        if readers:
            raise PlanError('backing_file %s is read as %s by domain %s, not as backing_format=%s; nothing was done'
                            % (printable(name), uses[0].declared_format, ', '.join(readers), wanted.backing_format))
        if wanted.backing_format == 'raw':
            check_disk_image(printable(path), 'raw', base.size())
            if head_format(base.head) == 'qcow2' and not uses:
                self.module.warn('backing_file %s starts with a qcow2 header but backing_format=raw: the overlay '
                                 'will show the guest those bytes, not the qcow2 image' % printable(name))
        if job.top is None and wanted.size is None:
            size = base.header.virtual_size if base.header is not None else base.size()
            job.wanted = dataclasses.replace(wanted, size=whole_sectors(size))

    def _refuse_unsafe(self, job, action):
        """D1, D2, D4: never convert, grow or remove a block device, or a file a domain or a QEMU uses."""
        doing = ACTION_DONE[action]
        if job.top.kind == 'block':
            why = 'grow it with the tool that manages it' if action == 'grow' else \
                'it would replace or unlink the device node'
            raise PlanError('%s is a block device; qcow2_create does not %s block devices (%s)'
                            % (job.label, action, why))
        options = job.request.options
        check_users(job.label, action, job.uses, job.fmt, options['force'], job.unknown_users,
                    vouched=options['source_format'] not in (None, 'auto'))
        if qemu_holds(job.top.fd):
            raise PlanError('%s is locked by another process (%s), so it is not %s; shut the domain down first'
                            % (job.label, LOCK_HOLDER, doing))
        if action != 'remove' and job.top.header is not None and job.top.header.corrupt:
            raise PlanError('%s is marked corrupt; repair it with qemu-img check -r first' % job.label)

    # --- owner, group, mode -----------------------------------------------------------------------

    def _plan_attributes(self, job, st):
        options = job.request.options
        wanted = {}
        if options['mode'] is not None:
            wanted['mode'] = self._mode(options['mode'], st)
        if options['owner']:
            wanted['uid'] = _user_id(options['owner'])
        if options['group']:
            wanted['gid'] = _group_id(options['group'])
        job.attrs = wanted
        differ = False
        if st is not None and job.plan.action != 'remove':
            have = {'mode': stat.S_IMODE(st.st_mode), 'uid': st.st_uid, 'gid': st.st_gid}
            differ = any(have[key] != value for key, value in wanted.items())
            if job.plan.action in ('none', 'drift', 'grow'):
                job.attrs_differ = differ
        if job.attrs_differ and stat.S_ISBLK(st.st_mode) and not options['block_device_attributes']:
            raise PlanError('%s is a block device: its owner, group and mode are left to udev and the tools that '
                            'manage it, and changed only with block_device_attributes=true; nothing was done'
                            % job.label)
        in_place = job.attrs_differ or job.plan.action == 'grow'
        if in_place and stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            problem = self._directory_problem(job)
            if problem:
                raise PlanError('%s has %d names (hard links) and lies in a directory another user can change (%s): '
                                'another name may be a file elsewhere that a user linked here, so it is not %s; '
                                'nothing was done' % (job.label, st.st_nlink, problem,
                                                      'grown' if job.plan.action == 'grow' else
                                                      'given another owner, group or mode'))
        if differ and stat.S_ISREG(st.st_mode):
            # In a directory others can change, the file at the image's name may be one they renamed
            # there (root's image of another domain, whose own name then no longer exists): only a file
            # this run creates is given an owner, group or mode there; a conversion keeps the original's.
            problem = self._directory_problem(job)
            if problem:
                raise PlanError('%s lies in a directory another user can change (%s): the file at that name may be '
                                'one that user moved there, so qcow2_create gives an owner, group or mode only to '
                                'files it creates there and leaves an existing file\'s as they are (%s); nothing was '
                                'done' % (job.label, problem, ', '.join(
                                    '%s %s' % (key, _shown(key, have[key])) for key in ('uid', 'gid', 'mode'))))
        if job.request.index is None and job.plan.action != 'remove' \
                and any(self.params.get(key) for key in _OTHER_FILE_ARGS):
            problem = self._directory_problem(job)
            if problem:
                raise PlanError('%s lies in a directory another user can change (%s): SELinux contexts and file '
                                'attributes are set by path, which that user could point elsewhere, so they are '
                                'not set; nothing was done' % (job.label, problem))

    def _directory_problem(self, job):
        """Why the image's directory, or one above it, is one other users can change (any name in it, or
        any directory below it, may be theirs), or None: ``_trusted_files``' rule on each directory from
        ``/`` down, as ``open_directory`` opened it."""
        return self._dir_problems[job.dir_path]

    def _mode(self, mode, st):
        if isinstance(mode, int):
            return mode
        text = str(mode)
        if _OCTAL_RE.match(text):
            return int(text, 8)
        base = st if st is not None else os.stat_result((stat.S_IFREG | 0o600,) + (0,) * 9)
        try:
            return self.module._symbolic_mode_to_octal(base, text)  # pylint: disable=protected-access
        except ValueError as err:
            raise PlanError("mode '%s' is not a valid mode: %s" % (text, err)) from None

    @staticmethod
    def _set_attributes(fd, attrs, default_mode=None):
        uid, gid = attrs.get('uid', -1), attrs.get('gid', -1)
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        mode = attrs.get('mode', default_mode)
        if mode is not None:
            os.fchmod(fd, mode)

    # --- applying --------------------------------------------------------------------------------

    def _apply(self, job):
        if self.check_mode:
            return
        job.cleaned = remove_dead_workdirs(job.dir_fd, job.dir_path, job.name)
        action = job.plan.action
        if action == 'create':
            self._create(job)
        elif action == 'convert':
            self._convert(job)
        elif action == 'grow':
            self._grow(job)
        elif action == 'remove':
            self._remove(job)
        if action in ('none', 'drift', 'grow') and job.attrs_differ:
            layer = job.top or job.chain.top
            self._set_attributes(layer.fd, job.attrs)

    def _create(self, job):
        wanted = job.wanted
        options = wanted.create_options()
        with WorkDir(job.dir_fd, job.dir_path, job.name) as work:
            try:
                self.qemu_img.create_new(work.file_path(), wanted.size, options, wanted.backing_file,
                                         wanted.backing_format, job.label, [work.fd])
            except QemuImgError as err:
                raise ApplyError('cannot create %s: %s; nothing was changed' % (job.label, err.msg)) from None
            fd = work.open()
            try:
                self._set_attributes(fd, job.attrs, default_mode=0o600)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                work.link_into_place(job.name)      # fails instead of replacing a file that appeared meanwhile
            except FileExistsError:
                raise ApplyError('%s appeared while this run created it; left it alone' % job.label) from None
            fsync_dir(job.dir_fd)

    def _convert(self, job):
        wanted, source = job.wanted, job.chain
        top = source.top
        if wanted.backing_file:
            keep, keep_name, keep_format = job.backing, wanted.backing_file, wanted.backing_format
        elif len(source.layers) > 1:
            keep, keep_name, keep_format = Chain(source.layers[1:]), top.backing_name, source.layers[1].fmt
        else:
            keep = keep_name = keep_format = None
        options = wanted.create_options()
        if keep is not None and not wanted.extended_l2:
            options['preallocation'] = 'off'       # QEMU refuses preallocation over a backing file without it
        fds = source.fds() + (job.backing.fds() if job.backing is not None else [])
        with WorkDir(job.dir_fd, job.dir_path, job.name) as work:
            target = work.file_path()
            fds.append(work.fd)
            keep_node = keep.node() if keep is not None else None
            try:
                self.qemu_img.convert_spec(source.spec(), target, options, json_spec(keep_node) if keep else None,
                                           keep_format, job.label, fds)
                if keep is not None:
                    self.qemu_img.rebase_unsafe(target, keep_name, keep_format, job.label, [work.fd])
                if wanted.size and wanted.size > job.before['virtual_size'] and job.request.options['resize'] == 'grow':
                    prealloc = effective_preallocation(wanted, keep is not None)
                    self.qemu_img.resize_spec(json_spec(image_node('qcow2', target, backing=keep_node)), wanted.size,
                                              None if prealloc == 'off' else prealloc, job.label, fds)
                same = self.qemu_img.compare_specs(source.spec(), json_spec(image_node('qcow2', target,
                                                                                       backing=keep_node)),
                                                   job.label, fds)
            except QemuImgError as err:
                raise ApplyError('cannot convert %s: %s; the original is unchanged' % (job.label, err.msg)) from None
            if not same:
                raise ApplyError('the converted copy of %s does not show the same content; the original is unchanged'
                                 % job.label)
            fd = work.open()
            try:
                self._set_attributes(fd, {'uid': top.st.st_uid, 'gid': top.st.st_gid})
                self._set_attributes(fd, job.attrs, default_mode=stat.S_IMODE(top.st.st_mode))
                os.fsync(fd)
            finally:
                os.close(fd)
            current = entry_stat(job.dir_fd, job.name)
            if current is None or not same_file(current, top.st):
                raise ApplyError('%s was replaced while this run converted it; nothing was changed' % job.label)
            self._still_unused(job, top, 'converted')
            backup = backup_name(job.name, job.dir_fd)
            link_backup(job.dir_fd, job.name, backup, top.st)    # the original stays whole under this name
            work.replace_into_place(job.name)
            fsync_dir(job.dir_fd)
        job.backup = os.path.join(job.dir_path, backup)

    def _grow(self, job):
        wanted = job.wanted
        prealloc = effective_preallocation(wanted, len(job.chain.layers) > 1)
        try:
            self.qemu_img.resize_spec(job.chain.spec(), wanted.size, None if prealloc == 'off' else prealloc,
                                      job.label, job.chain.fds())
        except QemuImgError as err:
            raise ApplyError('cannot grow %s: %s' % (job.label, err.msg)) from None

    def _still_unused(self, job, layer, doing):
        """Right before an image is renamed over or unlinked: planning found no QEMU and no running domain
        on it, but one may have started since. QEMU's image locks are read again on the open file, and
        the domains known to use it are asked whether they run now."""
        if qemu_holds(layer.fd):
            raise ApplyError('%s was locked by another process (%s) while this run worked on it, so it is not %s; '
                             'nothing was changed' % (job.label, LOCK_HOLDER, doing))
        users = {u.domain for u in job.uses or ()}
        if not users:
            return
        try:
            started = sorted(users & running_domains(self.params['uri']))
        except LibvirtUnavailable as err:
            raise ApplyError('cannot ask libvirt again whether domain %s, which uses %s, runs now (%s), so it is not '
                             '%s; nothing was changed' % (', '.join(sorted(users)), job.label, err.msg, doing)) \
                from None
        if started:
            raise ApplyError('domain %s, which uses %s, started while this run worked on it, so it is not %s; '
                             'nothing was changed' % (', '.join(started), job.label, doing))

    def _remove(self, job):
        current = entry_stat(job.dir_fd, job.name)
        if current is None or not same_file(current, job.top.st):
            raise ApplyError('%s was replaced while this run read it; nothing was removed' % job.label)
        self._still_unused(job, job.top, 'removed')
        os.unlink(job.name, dir_fd=job.dir_fd)
        if os.path.islink(job.path) and os.path.realpath(job.path) == job.real:
            os.unlink(job.path)             # the link that named the image goes with it
        fsync_dir(job.dir_fd)

    # --- results -----------------------------------------------------------------------------------

    def _after(self, job):
        """(facts, open layer or None) of the image once this run is done (planned facts in check mode)."""
        action = job.plan.action
        has_backing = bool((job.wanted and job.wanted.backing_file) or (job.before or {}).get('backing_file'))
        if self.check_mode or action in ('none', 'drift', 'remove'):
            layer = job.top or (job.chain.top if job.chain is not None else None)
            return planned_facts(job.before, job.wanted, action, has_backing), layer if action != 'remove' else None
        fd, st = open_file(job.name, nofollow=True, dir_fd=job.dir_fd)
        layer = layer_from_fd(job.path, fd, st, 'qcow2', real=job.real)
        if job.chain is not None:
            job.chain.close()
        job.chain, job.top = None, layer
        return self._facts(layer), layer

    def _filesystem(self, layer):
        if self.mounts is None:
            self.mounts = read_mounts()
        odirect, _why = probe_odirect_fd(layer.fd, layer.real)
        if layer.kind == 'block':
            return {'type': 'block device', 'mountpoint': None, 'odirect': odirect, 'shared': False}
        mountpoint, fstype = filesystem_of(layer.real, self.mounts)
        return {'type': fstype, 'mountpoint': mountpoint, 'odirect': odirect, 'shared': fstype in SHARED_FILESYSTEMS}

    def _result(self, job):
        action = job.plan.action
        after, layer = self._after(job)
        changed = action in ('create', 'grow', 'convert', 'remove') or job.attrs_differ
        result = {'path': job.label, 'action': ACTION_DONE[action], 'changed': changed,
                  'drift': {k: {'have': v[0], 'want': v[1]} for k, v in job.plan.drift.items()},
                  'backup_file': printable(job.backup) if job.backup else None,
                  'cleaned': [printable(p) for p in job.cleaned], 'image': after,
                  'format_source': job.format_source,
                  'used_by': None if job.uses is None else sorted({u.domain for u in job.uses})}
        if job.request.index is None:
            result['changed'] = self._other_file_args(job, changed)
        if after and after.get('virtual_size'):
            result['size'] = human_size(after['virtual_size'])
        if layer is not None:
            result['filesystem'] = self._filesystem(layer)
        if self.module._diff:
            header = '%s (qemu-img info)' % job.label
            result['diff'] = {'before': job.before or {}, 'after': after or {}, 'before_header': header,
                              'after_header': header}
        return result

    def _other_file_args(self, job, changed):
        """SELinux context and file attributes (single form only), through Ansible's own helpers."""
        if job.plan.action == 'remove' or not any(self.params.get(key) for key in _OTHER_FILE_ARGS):
            return changed
        if self.check_mode and not os.path.exists(job.real):
            return changed
        file_args = self.module.load_file_common_arguments(self.params, path=job.real)
        file_args.update(mode=None, owner=None, group=None)
        return self.module.set_fs_attributes_if_different(file_args, changed)


def _shown(key, value):
    return '%04o' % value if key == 'mode' else str(value)


def _user_id(owner):
    if str(owner).isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise PlanError("owner '%s' does not exist on this host" % owner) from None


def _group_id(group):
    if str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise PlanError("group '%s' does not exist on this host" % group) from None
