# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""The one place that talks to libvirt: connection, lookups, XML in and out, versions."""

from __future__ import annotations

import json
import os
import posixpath
import re
import threading
import time
import traceback
from urllib.parse import unquote, urlsplit

from ansible.module_utils.basic import env_fallback

from ._errors import DomainNotFound, KvmioError, LibvirtUnavailable
from ._parallel import map_threads
from ._trusted_files import UntrustedPath, entry_problem, trusted_directory

try:
    import libvirt
except ImportError:
    libvirt = None
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    LIBVIRT_IMPORT_ERROR = None

try:
    import libvirt_qemu
except ImportError:
    libvirt_qemu = None

LIBVIRT_ARGUMENT_SPEC = {
    'uri': {'type': 'str', 'default': 'qemu:///system', 'fallback': (env_fallback, ['LIBVIRT_DEFAULT_URI'])},
}

LIBVIRT_REQUIREMENT = 'libvirt-python (Debian/Ubuntu: python3-libvirt, RHEL: python3-libvirt)'

_EVENT_LOOP_LOCK = threading.Lock()
_EVENT_LOOP_STARTED = []
# libvirt registers the embedded driver anew on every open of a qemu:///embed URI, and a process can
# register only about fifteen drivers ("Too many drivers, cannot register QEMU"). So a process keeps one
# connection per embedded root and shares it: a module run opens it once anyway; a process that runs
# many (tests, the demo's in-process runs) would otherwise stop after a dozen.
_EMBEDDED_CONNECTIONS = {}


def _start_event_loop():
    """The embedded driver runs inside this process and needs an event loop to talk to QEMU."""
    with _EVENT_LOOP_LOCK:
        if _EVENT_LOOP_STARTED:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run():
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name='libvirt-event-loop', daemon=True).start()
        _EVENT_LOOP_STARTED.append(True)


# Host names that reach this host's own libvirt through a transport (ssh, tcp, tls).
_LOCAL_HOSTS = frozenset(('', 'localhost', 'localhost.localdomain', '127.0.0.1', '::1'))


def lock_subject(uri):
    """Which libvirt ``uri`` reaches, as one string: the key of the host lock (``_lock.HostLock``), so
    that two spellings of one libvirt take the same lock, and the origin a backup records
    (``_backup_origin``), so that domain_restore puts a backup back only into the libvirt it came from.
    ``qemu:///system``, ``qemu+unix:///system``,
    ``qemu+ssh://localhost/system``, ``qemu:///system?socket=/run/libvirt/libvirt-sock`` and
    ``qemu:///system/`` are all ``qemu:///system``: the transport and the connection parameters say how
    to reach a libvirt, not which one. Kept: the driver, a remote host, the path, the user of a
    remote session, and an embedded driver's ``root`` (normalised). Pure string work: aliases from
    libvirt.conf (``uri_aliases``) are not resolved."""
    root = embedded_root(uri)
    if root is not None:
        return 'qemu:///embed?root=' + posixpath.normpath(root)
    try:
        parts = urlsplit(uri.strip())
    except ValueError:
        return uri
    driver = parts.scheme.lower().split('+', 1)[0]
    host = (parts.hostname or '').lower()
    netloc = '' if host in _LOCAL_HOSTS else host + (':%d' % parts.port if parts.port else '')
    path = posixpath.normpath(parts.path) if parts.path else '/'
    path = '/' if path == '//' else path
    if path.endswith('/session') and parts.username and netloc:
        netloc = '%s@%s' % (parts.username, netloc)
    return '%s://%s%s' % (driver, netloc, path)


def _query_parameters(query):
    """(name, value) pairs of a URI query as libvirt splits them (virURIParseParams): on ``&`` and
    ``;``, each name and value percent-decoded, ``+`` kept as it is (parse_qs would make it a space and
    would not split on ``;``: a root it reads would not be the root libvirt opens)."""
    pairs = []
    for item in re.split('[&;]', query):
        if not item:
            continue
        name, _sep, value = item.partition('=')
        pairs.append((unquote(name), unquote(value)))
    return pairs


def embedded_root(uri):
    """The root directory libvirt's embedded QEMU driver opens for ``uri``, or None when ``uri`` does
    not reach the embedded driver. The one place that recognises an embedded URI.

    libvirt 9.0 (tried on every spelling): any ``qemu`` URI whose percent-decoded path is ``/embed``
    loads the embedded driver in this process, whatever the host (``qemu://host/embed`` reads the root's
    configuration, then fails) or the other parameters; ``root`` is the first ``root`` parameter.
    Recognised here more widely (any case, any ``qemu+transport``, any ``root`` spelling) since
    checking a root libvirt would then refuse to open costs nothing. Raises KvmioError for a root
    that cannot be told for sure: none, two, a relative one, one with a NUL byte (libvirt stops there)."""
    if not isinstance(uri, str):
        return None
    try:
        parts = urlsplit(uri.strip())
    except ValueError:
        if '/embed' in unquote(uri).lower():
            raise KvmioError("uri '%s' cannot be parsed, and it may name libvirt's embedded driver; "
                             "write it as qemu:///embed?root=/some/dir" % uri) from None
        return None
    if parts.scheme.lower().split('+', 1)[0] != 'qemu' or unquote(parts.path) != '/embed':
        return None
    roots = [value for name, value in _query_parameters(parts.query) if name.lower() == 'root']
    if len(roots) != 1 or not roots[0].startswith('/') or '\x00' in roots[0]:
        raise KvmioError("uri '%s' names libvirt's embedded driver but not one absolute root directory "
                         "(root parameters: %s); write it as qemu:///embed?root=/some/dir"
                         % (uri, ', '.join(repr(r) for r in roots) or 'none'))
    return roots[0]


def is_embedded(uri):
    return embedded_root(uri) is not None


def check_embedded_root(uri):
    """Refuses (UntrustedPath, naming the root) an embedded root that another user can change.

    The embedded driver runs inside this process, as root: at open it reads ``ROOT/etc/qemu.conf``
    (which says as whom QEMU runs) and every domain in ``ROOT/etc/qemu``, probing each one's
    ``<emulator>``. So the root, and every directory from ``/`` down to it, must pass ``_trusted_files``'
    rule (owned by root or the running user, not writable by group or others), and so must its
    ``etc``, ``etc/qemu`` and ``qemu.conf`` when they exist. Trusted, not private: QEMU runs as the
    user qemu.conf names (libvirt-qemu by default) and must reach its files under the root. A missing
    root is created here (0755, as libvirt would), in a parent already checked, so that no one else can
    make it between this check and libvirt's open."""
    root = embedded_root(uri)
    if root is None:
        return
    what = "uri '%s': the embedded libvirt root %s" % (uri, root)
    real = trusted_directory(root, what, create=True, mode=0o755)
    trusted_directory(os.path.join(real, 'etc', 'qemu'), what, create=True, dry_run=True)
    conf = os.path.join(real, 'etc', 'qemu.conf')
    if os.path.lexists(conf):
        problem = entry_problem(conf)
        if problem:
            raise UntrustedPath('%s: %s: %s, so it is not used (only root or the user running the module may '
                                'be able to change it)' % (what, conf, problem), untrusted=problem)


def open_connection(uri):
    """A libvirt connection to ``uri``: a new one, or for an embedded root the process's shared one
    (its root checked first: ``check_embedded_root``)."""
    if not is_embedded(uri):
        return libvirt.open(uri)
    _start_event_loop()
    with _EVENT_LOOP_LOCK:
        conn = _EMBEDDED_CONNECTIONS.get(uri)
        if conn is None or not conn.isAlive():
            check_embedded_root(uri)
            conn = _EMBEDDED_CONNECTIONS[uri] = libvirt.open(uri)
        return conn


def close_connection(uri, conn):
    """Closes ``conn`` unless it is the process's shared connection to an embedded root."""
    if _EMBEDDED_CONNECTIONS.get(uri) is conn:
        return
    conn.close()


def library_version():
    """The libvirt library's version as a tuple, without a connection; None without the binding."""
    if libvirt is None:
        return None
    return version_tuple(libvirt.getVersion())


def _ignore_error(_context, _error):
    return None


def version_tuple(number):
    """libvirt encodes versions as major * 1,000,000 + minor * 1,000 + micro."""
    return (number // 1000000, (number // 1000) % 1000, number % 1000)


def _error_code(err):
    try:
        return err.get_error_code()
    except AttributeError:
        return None


class LibvirtClient:
    """One connection per module run. Use as a context manager so it is always closed."""

    def __init__(self, uri):
        if libvirt is None:
            raise LibvirtUnavailable(
                'the Python binding for libvirt is missing on this host: install %s' % LIBVIRT_REQUIREMENT,
                exception=LIBVIRT_IMPORT_ERROR)
        self.uri = uri
        self.conn = None
        self._cpu_count = None

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def open(self):
        # libvirt prints every error to stderr unless told otherwise; ours arrive as exceptions and are
        # reported once, in the result.
        libvirt.registerErrorHandler(_ignore_error, None)
        try:
            self.conn = open_connection(self.uri)
        except libvirt.libvirtError as err:
            raise LibvirtUnavailable(
                "cannot connect to libvirt at URI '%s': %s. Check the URI, and that libvirtd "
                "(or virtqemud) runs on this host." % (self.uri, err.get_error_message()),
                uri=self.uri) from None
        return self

    def another(self):
        """A new connection to the same URI (opened; close it; an embedded root has one per process): for
        the checks after an operation whose connection was lost, when libvirt may have carried it out."""
        return LibvirtClient(self.uri).open()

    def close(self):
        if self.conn is not None:
            try:
                close_connection(self.uri, self.conn)
            except libvirt.libvirtError:
                pass
            self.conn = None

    # --- facts about the host ---------------------------------------------------------------

    def libvirt_version(self):
        return version_tuple(self.conn.getLibVersion())

    def hypervisor_version(self):
        """QEMU's version for qemu:// URIs, or None when the driver does not say."""
        try:
            number = self.conn.getVersion()
        except libvirt.libvirtError:
            return None
        return version_tuple(number) if number else None

    def capabilities_xml(self):
        return self.conn.getCapabilities()

    def cpu_map(self):
        """(number of host CPUs, set of online CPUs)."""
        count, online, _online_count = self._call('read the host CPU map', self.conn.getCPUMap)
        return count, {cpu for cpu, up in enumerate(online) if up}

    # --- live pinning (running domains) ---------------------------------------------------------

    @staticmethod
    def _cpus(cpumap):
        return frozenset(cpu for cpu, on in enumerate(cpumap) if on)

    def live_pins(self, dom):
        """{'vcpus': {n: cpus}, 'emulator': cpus, 'iothreads': {id: cpus}} of a running domain."""
        live = libvirt.VIR_DOMAIN_AFFECT_LIVE
        name = dom.name()
        vcpus = self._call('read the vCPU pins of %s' % name, dom.vcpuPinInfo, live)
        emulator = self._call('read the emulator pin of %s' % name, dom.emulatorPinInfo, live)
        threads = self._call('read the iothreads of %s' % name, dom.ioThreadInfo, live) or []
        return {'vcpus': {n: self._cpus(m) for n, m in enumerate(vcpus)}, 'emulator': self._cpus(emulator),
                'iothreads': {int(t[0]): self._cpus(t[1]) for t in threads}}

    def _cpumap(self, cpus):
        if self._cpu_count is None:
            self._cpu_count = self.cpu_map()[0]
        return tuple(cpu in cpus for cpu in range(self._cpu_count))

    def pin_vcpu_live(self, dom, vcpu, cpus):
        self._call('pin vCPU %d of %s' % (vcpu, dom.name()), dom.pinVcpuFlags, vcpu, self._cpumap(cpus),
                   libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def pin_emulator_live(self, dom, cpus):
        self._call('pin the emulator of %s' % dom.name(), dom.pinEmulator, self._cpumap(cpus),
                   libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def add_iothread_live(self, dom, number):
        self._call('add iothread %d to %s' % (number, dom.name()), dom.addIOThread, number,
                   libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def pin_iothread_live(self, dom, number, cpus):
        self._call('pin iothread %d of %s' % (number, dom.name()), dom.pinIOThread, number, self._cpumap(cpus),
                   libvirt.VIR_DOMAIN_AFFECT_LIVE)

    # --- domains ------------------------------------------------------------------------------

    def persistent_domains(self):
        """{name: domain handle} of every persistent domain, in one call (no lookup per name)."""
        flags = libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT
        return {dom.name(): dom for dom in self._call('list domains', self.conn.listAllDomains, flags)}

    def all_domains(self):
        """Every domain libvirt knows, persistent or transient, running or not."""
        return self._call('list domains', self.conn.listAllDomains, 0)

    def persistent_domain_names(self):
        return sorted(self.persistent_domains())

    def lookup(self, name):
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError as err:
            if _error_code(err) == libvirt.VIR_ERR_NO_DOMAIN:
                raise DomainNotFound("domain '%s' is not defined at %s" % (name, self.uri), domain=name) from None
            raise self._wrap('look up domain %s' % name, err) from None

    def inactive_xml(self, dom):
        # SECURE keeps graphics passwords: a redefine from XML without them would drop them.
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        return self._call('read the XML of domain %s' % dom.name(), dom.XMLDesc, flags)

    def inactive_xmls(self, doms):
        """{name: inactive XML} of many domains, read with overlapping calls. A domain undefined since it
        was listed (another tool removed it) is left out; the caller says so."""
        names = list(doms)

        def read(name):
            try:
                return self.inactive_xml(doms[name])
            except KvmioError as err:
                if err.details.get('libvirt_error_code') == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                raise
        return {name: xml for name, xml in zip(names, map_threads(read, names)) if xml is not None}

    def active_names(self):
        """Names of the running (and paused) domains, in one call."""
        flags = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
        return {dom.name() for dom in self._call('list running domains', self.conn.listAllDomains, flags)}

    def live_xml(self, dom):
        return self._call('read the live XML of domain %s' % dom.name(), dom.XMLDesc, libvirt.VIR_DOMAIN_XML_SECURE)

    def is_active(self, dom):
        return bool(self._call('read the state of domain %s' % dom.name(), dom.isActive))

    def state(self, dom):
        """'running', 'shutoff', 'paused', ... from virDomainGetState."""
        names = {getattr(libvirt, 'VIR_DOMAIN_%s' % k.upper()): k for k in
                 ('nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended')}
        code = self._call('read the state of domain %s' % dom.name(), dom.state)[0]
        return names.get(code, str(code))

    def shutdown(self, dom):
        """Asks the guest to power off (ACPI power button); returns at once."""
        self._call('shut down domain %s' % dom.name(), dom.shutdown)

    def destroy(self, dom):
        self._call('power off domain %s' % dom.name(), dom.destroy)

    def start(self, dom):
        self._call('start domain %s' % dom.name(), dom.create)

    def define(self, xml, name=None):
        try:
            return self.conn.defineXML(xml)
        except libvirt.libvirtError as err:
            raise self._wrap('define domain %s' % (name or '?'), err) from None

    def create_transient(self, xml, name=None):
        """Starts a transient domain that libvirtd destroys when this connection closes (AUTODESTROY),
        so a benchmark guest cannot outlive the process that started it. (The embedded driver has no
        autodestroy; there the caller's cleanup is all there is.)"""
        embedded = is_embedded(self.uri)
        try:
            return self.conn.createXML(xml, 0 if embedded else libvirt.VIR_DOMAIN_START_AUTODESTROY)
        except libvirt.libvirtError as err:
            raise self._wrap('start domain %s' % (name or '?'), err) from None

    def undefine(self, dom):
        flags = 0
        for flag in ('VIR_DOMAIN_UNDEFINE_NVRAM', 'VIR_DOMAIN_UNDEFINE_MANAGED_SAVE', 'VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA'):
            flags |= getattr(libvirt, flag, 0)
        self._call('undefine domain %s' % dom.name(), dom.undefineFlags, flags)

    def volume_path(self, pool, volume):
        """Resolves a ``<disk type='volume'>`` source to the path QEMU opens, or None."""
        try:
            return self.conn.storagePoolLookupByName(pool).storageVolLookupByName(volume).path()
        except libvirt.libvirtError:
            return None

    # --- running QEMU: monitor, jobs, save and restore (live apply) ----------------------------

    def qmp(self, dom, command, **arguments):
        """Runs one QMP command through libvirt (virDomainQemuMonitorCommand) and returns its ``return``.

        libvirt marks the domain tainted (custom-monitor) for the life of its QEMU process."""
        if libvirt_qemu is None:
            raise LibvirtUnavailable('the Python binding libvirt_qemu is missing on this host: install %s'
                                     % LIBVIRT_REQUIREMENT)
        request = {'execute': command}
        if arguments:
            request['arguments'] = arguments
        what = 'run %s in the QEMU of domain %s' % (command, dom.name())
        reply = self._call_operation(what, libvirt_qemu.qemuMonitorCommand, dom, json.dumps(request), 0)
        try:
            data = json.loads(reply)
        except ValueError:
            raise KvmioError('QEMU gave no JSON reply to %s: %r' % (what, reply[:200])) from None
        if 'error' in data:
            error = data['error'] if isinstance(data['error'], dict) else {}
            raise KvmioError('QEMU refused to %s: %s' % (what, error.get('desc', data['error'])),
                             qmp_error=error.get('class'))
        return data.get('return')

    def taint_messages(self, dom):
        """libvirt's tainting messages of a domain (virDomainGetMessages, libvirt >= 7.1), or None
        when this libvirt cannot say."""
        flag = getattr(libvirt, 'VIR_DOMAIN_MESSAGE_TAINTING', None)
        if flag is None or not hasattr(dom, 'messages'):
            return None
        return self._call('read the messages of domain %s' % dom.name(), dom.messages, flag) or []

    def domain_id(self, dom):
        return self._call('read the id of domain %s' % dom.name(), dom.ID)

    def job_in_progress(self, dom):
        """The operation of the domain job in progress (migration, save, backup, ...), or None."""
        stats = self._call('read the job of domain %s' % dom.name(), dom.jobStats, 0) or {}
        if stats.get('type', libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        names = {getattr(libvirt, name): name[len('VIR_DOMAIN_JOB_OPERATION_'):].lower()
                 for name in dir(libvirt) if name.startswith('VIR_DOMAIN_JOB_OPERATION_')}
        return names.get(stats.get('operation'), 'a job')

    def block_job(self, dom, target):
        """{'type', 'cur', 'end', ...} of the block job running on disk ``target``, or {} when none."""
        return self._call('read the block jobs of domain %s' % dom.name(), dom.blockJobInfo, target, 0) or {}

    def set_live_metadata(self, dom, xml, key, namespace):
        """Sets a metadata element of the running domain only (its persistent config is untouched)."""
        self._call_operation('record metadata in the live XML of domain %s' % dom.name(), dom.setMetadata,
                             libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml, key, namespace, libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def suspend(self, dom):
        """Stops the domain's vCPUs (virDomainSuspend); QEMU keeps running."""
        self._call_operation('pause domain %s' % dom.name(), dom.suspend)

    def resume(self, dom):
        self._call_operation('resume domain %s' % dom.name(), dom.resume)

    def save(self, dom, path, running=True):
        """Saves a domain's memory to ``path`` and stops it (virDomainSaveFlags); ``running``: whether the
        restore starts its vCPUs (else it stays paused). On failure libvirt removes the partial image and
        leaves the domain as it was."""
        flags = libvirt.VIR_DOMAIN_SAVE_RUNNING if running else libvirt.VIR_DOMAIN_SAVE_PAUSED
        self._call_operation('save domain %s to %s' % (dom.name(), path), dom.saveFlags, path, None, flags)

    def uuid(self, dom):
        return self._call('read the UUID of domain %s' % dom.name(), dom.UUIDString)

    def lookup_uuid(self, uuid):
        return self._call('look up domain %s' % uuid, self.conn.lookupByUUIDString, uuid)

    def wait_for_no_job(self, dom, timeout):
        """Waits until no job runs on the domain (a save libvirt goes on with after this client lost its
        connection); returns whether none does within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.is_active(dom) and self.job_in_progress(dom):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def save_image_xml(self, path):
        flags = libvirt.VIR_DOMAIN_SAVE_IMAGE_XML_SECURE
        return self._call_operation('read the XML of the save image %s' % path, self.conn.saveImageGetXMLDesc,
                                    path, flags)

    def save_image_define(self, path, xml):
        """Replaces the XML in a save image (virDomainSaveImageDefineXML). libvirt checks that the
        guest ABI stays the same and validates it; on failure the image is left as it was."""
        self._call_operation('define the XML of the save image %s' % path, self.conn.saveImageDefineXML, path, xml, 0)

    def restore(self, path):
        """Starts the domain saved in ``path`` from its image, in the state it was saved in."""
        self._call_operation('restore the domain saved in %s' % path, self.conn.restore, path)

    # --- helpers ------------------------------------------------------------------------------

    def _call_operation(self, what, func, *args):
        """Like ``_call``, but only a lost connection counts as one: an operation's own system error
        (a full disk, a QEMU that would not start) is reported as libvirt gave it."""
        try:
            return func(*args)
        except libvirt.libvirtError as err:
            code = _error_code(err)
            if code in (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_RPC):
                raise self._wrap(what, err) from None
            raise KvmioError('libvirt refused to %s: %s' % (what, err.get_error_message()),
                             libvirt_error_code=code) from None

    def _call(self, what, func, *args):
        try:
            return func(*args)
        except libvirt.libvirtError as err:
            raise self._wrap(what, err) from None

    def _wrap(self, what, err):
        code = _error_code(err)
        if code in (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC):
            return LibvirtUnavailable('lost the connection to libvirt at %s while trying to %s: %s'
                                      % (self.uri, what, err.get_error_message()), uri=self.uri)
        return KvmioError('libvirt refused to %s: %s' % (what, err.get_error_message()), libvirt_error_code=code)
