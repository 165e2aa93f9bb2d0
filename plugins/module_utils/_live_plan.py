# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note: this module_utils file is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

"""Bringing a running domain's disks to its persistent settings without a restart: the decisions. Pure.

Two methods; ``_live_apply`` carries them out:

- ``reopen`` (no pause): one QMP ``blockdev-reopen`` per disk chain changes cache.direct,
  cache.no-flush, discard and detect_zeroes in a few milliseconds of drained I/O, once the host has
  written the chain's cached data back (the reopen's own flush stops every vCPU). QEMU cannot change
  aio or an iothread this way.
- ``restore`` (a pause of seconds, only when asked): ``virsh save`` -> ``save-image-define`` ->
  ``restore`` rebuilds QEMU from an edited copy of its XML, so io and iothread change too.

Neither changes the write cache the guest sees (WCE: on for none/writeback/unsafe, off for
writethrough/directsync). A reopen cannot touch it; a restore sets it from the XML, and a guest that
believes its disk writes through sends no flushes: the XML given to a restore keeps the write cache
the guest runs with. So writethrough <-> none is only partly applied until a restart, and the result
says so. Likewise no-flush (cache=unsafe) is not applied under a guest that runs without a write
cache (it relies on every write being durable), and a reopen never leaves aio=native without O_DIRECT.

Only what the run decided changes (``tuned``): any other setting, and any disk the run skips, stays as
QEMU runs it, and ``broken_live_rules`` runs the policy's rule table on the running disk. A restore
keeps the write cache of every disk of the domain (``restore_xml``).

What QEMU runs is read from ``query-named-block-nodes`` and ``query-block`` (see ``_blockdev``),
or from the live XML for a domain nobody changed through the monitor (then QEMU runs exactly that).
QEMU does not report a node's discard unless detect_zeroes is unmap (which needs it): the discard a
reopen set is kept in the live XML's metadata with the QEMU process it applies to.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from xml.sax.saxutils import quoteattr

from ._blockdev import cache_flags, cache_mode, detect_zeroes_mode
from ._disk_policy import QEMU_DEFAULTS, SETTINGS, Check, broken_rules, disk_kind_skip_reason
from ._disk_xml import disk_info, volume_sources
from ._domain_plan import Change
from ._domain_xml import parse_domain, remove_child, set_attr, to_text
from ._errors import PlanError

APPLY_CHOICES = ('config', 'live', 'live_or_pause')
# The <driver> attributes a running disk is compared on, as libvirt names them.
LIVE_SETTINGS = ('cache', 'io', 'discard', 'detect_zeroes', 'iothread')
STATUSES = ('in_sync', 'applied_live', 'partially_applied', 'restart_required')
METHOD_LABELS = {'reopen': 'blockdev-reopen', 'restore': 'save-restore'}
RECORD_NAMESPACE = 'https://github.com/kvmio/tuning/live-apply/1'
RECORD_TAG = '{%s}live' % RECORD_NAMESPACE

WHY_WRITE_CACHE = ("the guest's write cache (WCE) cannot change while it runs: it runs as %s until a "
                   "restart (not a reboot from inside the guest)")
WHY_NO_FLUSH = ('no-flush is not applied while the guest runs without a write cache: it relies on every '
                'write being durable')
WHY_NATIVE = 'io=native stays until io changes, and native needs O_DIRECT (cache none or directsync)'
WHY_AIO = 'QEMU cannot change aio on a running disk: apply=live_or_pause (save/restore) or a restart'
WHY_IOTHREAD = 'a running disk cannot move to another iothread: apply=live_or_pause (save/restore) or a restart'
WHY_NO_IOTHREAD = 'iothread %s does not exist in the running domain: add it live (iothread_pin) or restart'
WHY_MIXED = ('the nodes of its chain run cache settings no cache mode describes; this run does not tune its cache, '
             'so it is left as it runs')
WHY_ZEROES_DISCARD = 'detect_zeroes=unmap needs discard=unmap, which the disk does not run'
WHY_OTHER = 'not reached by this method'


def driver_settings(disk):
    """{setting: value or None} of a ``<disk>`` element's driver, for LIVE_SETTINGS."""
    driver = disk.find('driver')
    return {key: (driver.get(key) if driver is not None else None) for key in LIVE_SETTINGS}


def effective(settings):
    """What QEMU runs for driver attributes ``settings`` (None: libvirt passes nothing, QEMU's default)."""
    write_cache, direct, no_flush = cache_flags(settings.get('cache'))
    zeroes = detect_zeroes_mode(settings.get('discard'), settings.get('detect_zeroes'))
    return {'write_cache': write_cache, 'direct': direct, 'no_flush': no_flush,
            'io': settings.get('io') or QEMU_DEFAULTS['io'],
            'discard': settings.get('discard') or QEMU_DEFAULTS['discard'],
            'detect_zeroes': zeroes or QEMU_DEFAULTS['detect_zeroes'], 'iothread': settings.get('iothread')}


@dataclass(frozen=True)
class RunningDisk:
    """What QEMU runs for one disk. ``write_cache`` is the device's write-cache as QEMU started it
    (from the live XML); ``guest_write_cache`` the one the guest runs with now (query-block), None
    when not read. ``direct``/``no_flush`` are None when the nodes of the chain differ."""

    target: str
    write_cache: bool
    direct: bool | None
    no_flush: bool | None
    discard: str
    detect_zeroes: str
    io: str
    iothread: str | None
    read_from: str = 'live_xml'
    guest_write_cache: bool | None = None

    @property
    def cache(self):
        """The cache mode QEMU runs, named with the write cache the guest believes it has: a guest that
        turned its write cache off on a ``writeback`` disk runs ``writethrough`` (QEMU writes through for
        it), and that is the mode a restore or a migration must give it."""
        if self.direct is None or self.no_flush is None:
            return 'mixed'
        mode = cache_mode(self.believed_write_cache, self.direct, self.no_flush)
        if mode is None and self.no_flush:
            return 'unsafe'         # no-flush under a guest without a write cache: its flushes are ignored
        return mode or 'mixed'

    @property
    def believed_write_cache(self):
        """The write cache the guest believes it has: what it runs with, else what QEMU started with."""
        return self.write_cache if self.guest_write_cache is None else self.guest_write_cache

    def values(self):
        return {'cache': self.cache, 'io': self.io, 'discard': self.discard, 'detect_zeroes': self.detect_zeroes,
                'iothread': self.iothread}

    def as_dict(self):
        report = self.values()
        report.update({'write_cache': self.write_cache, 'guest_write_cache': self.guest_write_cache,
                       'direct': self.direct, 'no_flush': self.no_flush, 'read_from': self.read_from})
        return report


def running_from_live_xml(target, live_settings):
    """QEMU's state for a domain nobody changed through the monitor: exactly its live XML."""
    value = effective(live_settings)
    return RunningDisk(target=target, write_cache=value['write_cache'], direct=value['direct'],
                       no_flush=value['no_flush'], discard=value['discard'], detect_zeroes=value['detect_zeroes'],
                       io=value['io'], iothread=value['iothread'], read_from='live_xml')


def _uniform(values):
    values = set(values)
    return values.pop() if len(values) == 1 else None


def running_from_qemu(chain, live_settings, nodes, devices, recorded_discard=None):
    """QEMU's state of one disk from its nodes (``_blockdev.node_states``) and devices
    (``device_states``). ``recorded_discard``: the discard a reopen gave the top node, if recorded."""
    value = effective(live_settings)
    states = [nodes[name] for name in chain.node_names()]
    top = nodes[chain.top.format_node]
    if top.detect_zeroes == 'unmap':
        discard = 'unmap'           # QEMU refuses detect-zeroes=unmap without discard=unmap
    else:
        discard = recorded_discard or value['discard']
    device = devices.get(chain.top.format_node)
    return RunningDisk(target=chain.target, write_cache=value['write_cache'],
                       direct=_uniform(s.direct for s in states), no_flush=_uniform(s.no_flush for s in states),
                       discard=discard, detect_zeroes=top.detect_zeroes, io=value['io'], iothread=value['iothread'],
                       read_from='qemu', guest_write_cache=device.write_cache if device else None)


# --- pairing the persistent and the running disks ------------------------------------------------

def _source_key(disk):
    source = disk.find('source')
    if source is None:
        return (disk.get('type', 'file'),)
    keys = ('file', 'dev', 'pool', 'volume', 'protocol', 'name')
    return (disk.get('type', 'file'),) + tuple(source.get(k) for k in keys)


def _target(disk):
    target = disk.find('target')
    return (target.get('dev'), target.get('bus')) if target is not None else (None, None)


@dataclass
class DiskPair:
    """A tunable disk of the persistent config and the same disk in the running domain (or None)."""

    target: str
    wanted: dict
    live: object = None             # the live <disk> element
    why_unpaired: str = ''


def pair_disks(config_root, live_root, tuned=None):
    """The persistent config's tunable disks, each with its running counterpart: same target, bus and
    source. A disk whose bus, target or source changed has none: that waits for a restart.
    ``tuned``: the targets the run tunes (None: every tunable one); a disk the run skips gets no pair."""
    running = {}
    for disk in live_root.findall('devices/disk'):
        running.setdefault(_target(disk)[0], disk)
    pairs = []
    # A volume's path does not matter here, only that it names one.
    volumes = {key: '%s/%s' % key for key in volume_sources(config_root)}
    for disk in config_root.findall('devices/disk'):
        info = disk_info(disk, volumes)
        target, bus = _target(disk)
        if disk_kind_skip_reason(info) or (tuned is not None and target not in tuned):
            continue
        live = running.get(target)
        pair = DiskPair(target=target, wanted=driver_settings(disk))
        if live is None:
            pair.why_unpaired = 'not in the running domain (a new target): applies at the next boot'
        elif _target(live)[1] != bus:
            pair.why_unpaired = 'runs on bus %s, configured on %s: applies at the next boot' % (_target(live)[1], bus)
        elif _source_key(live) != _source_key(disk):
            pair.why_unpaired = 'runs another source than the configured one: applies at the next boot'
        else:
            pair.live = live
        pairs.append(pair)
    return pairs


_MEMORY_UNITS = {'b': 1, 'bytes': 1, 'k': 1024, 'kib': 1024, 'kb': 1000, 'm': 1024 ** 2, 'mib': 1024 ** 2,
                 'mb': 1000 ** 2, 'g': 1024 ** 3, 'gib': 1024 ** 3, 'gb': 1000 ** 3, 't': 1024 ** 4, 'tib': 1024 ** 4,
                 'tb': 1000 ** 4}


def memory_bytes(root):
    """The guest's memory in bytes (``<currentMemory>``, else ``<memory>``; libvirt's default unit is KiB):
    about what its save image takes."""
    for tag in ('currentMemory', 'memory'):
        element = root.find(tag)
        if element is None or not (element.text or '').strip():
            continue
        try:
            return int(element.text.strip()) * _MEMORY_UNITS[element.get('unit', 'KiB').lower()]
        except (KeyError, ValueError):
            continue
    return 0


def live_iothreads(live_root):
    """The iothread ids a running domain has (``<iothreadids>``, else 1..``<iothreads>``)."""
    ids = {el.get('id') for el in live_root.findall('iothreadids/iothread') if el.get('id')}
    if ids:
        return ids
    try:
        count = int((live_root.findtext('iothreads') or '0').strip())
    except ValueError:
        count = 0
    return {str(n) for n in range(1, count + 1)}


# --- what a method reaches ---------------------------------------------------------------------

@dataclass
class DiskOutcome:
    """What ``method`` does to one running disk. ``driver`` holds the driver attributes it gives
    the disk (the reopen options are built from them, or the save image's XML gets them)."""

    target: str
    method: str | None
    status: str
    before: dict
    after: dict
    driver: dict = field(default_factory=dict)
    changes: list = field(default_factory=list)      # Change records, live=True
    pending: list = field(default_factory=list)      # {'setting', 'running', 'wanted', 'why'}
    expected: RunningDisk | None = None               # QEMU's state once done (what verification checks)
    wanted: dict = field(default_factory=dict)        # what the run brings the disk to, as QEMU would run it
    error: str = ''
    seconds: float | None = None                      # how long the reopen took
    host_sync_seconds: float | None = None            # the host's write-back of the chain before the reopen
    blocks_restore: str = ''                          # why a restore cannot keep this disk as it must

    def as_dict(self):
        return {'target': self.target, 'status': self.status, 'method': METHOD_LABELS.get(self.method),
                'running': self.before, 'now': self.after, 'wanted': self.wanted, 'pending': self.pending,
                'applied': [c.setting for c in self.changes], 'error': self.error or None,
                'reopen_ms': round(self.seconds * 1000, 2) if self.seconds is not None else None,
                'host_sync_ms': (round(self.host_sync_seconds * 1000, 2) if self.host_sync_seconds is not None
                                 else None)}


def _pending(setting, running, wanted, why):
    return {'setting': setting, 'running': running, 'wanted': wanted, 'why': why}


def _status(changes, pending):
    if changes:
        return 'partially_applied' if pending else 'applied_live'
    return 'restart_required' if pending else 'in_sync'


def _outcome(target, method, running, expected, wanted_values, why, driver, blocks_restore=''):
    before, after = running.values(), expected.values()
    changes = [Change(device=target, setting=key, before=before[key], after=after[key],
                      reason='%s, without a restart' % METHOD_LABELS[method], live=True)
               for key in LIVE_SETTINGS if before[key] != after[key]]
    pending = [_pending(key, after[key], wanted_values[key], why[key] or WHY_OTHER)
               for key in LIVE_SETTINGS if after[key] != wanted_values[key]]
    return DiskOutcome(target=target, method=method if changes else None, status=_status(changes, pending),
                       before=before, after=after, driver=driver, changes=changes, pending=pending,
                       expected=expected, wanted=wanted_values, blocks_restore=blocks_restore)


def undone(outcome, error):
    """``outcome`` after its method failed and changed nothing: every difference waits for a restart."""
    pending = [_pending(key, outcome.before[key], outcome.wanted[key], error)
               for key in LIVE_SETTINGS if key in outcome.before and outcome.before[key] != outcome.wanted.get(key)]
    return DiskOutcome(target=outcome.target, method=None, status=_status([], pending), before=outcome.before,
                       after=dict(outcome.before), pending=pending, wanted=outcome.wanted, error=error)


def refused_by_rule(outcome, kept, why):
    """``outcome`` not carried out because the disk would then break a rule of the policy's table
    (``why``): the disk keeps what ``kept`` (the same method with nothing tuned) gives it."""
    pending = [_pending(key, kept.after[key], outcome.wanted[key], why)
               for key in LIVE_SETTINGS if kept.after[key] != outcome.wanted[key]]
    return DiskOutcome(target=outcome.target, method=None, status=_status([], pending), before=outcome.before,
                       after=kept.after, driver=kept.driver, pending=pending, expected=kept.expected,
                       wanted=outcome.wanted, error=why, blocks_restore=kept.blocks_restore)


def _wanted_values(wanted):
    value = effective(wanted)
    return {'cache': cache_mode(value['write_cache'], value['direct'], value['no_flush']), 'io': value['io'],
            'discard': value['discard'], 'detect_zeroes': value['detect_zeroes'], 'iothread': value['iothread']}


def _tuned(tuned):
    return frozenset(LIVE_SETTINGS) if tuned is None else frozenset(tuned)


class _Target:
    """What a method brings one disk to: for a setting the run tuned, the persistent value; for any
    other, what QEMU runs now (an admin's pending edit of the persistent configuration is not this
    run's to apply). ``values`` as QEMU would run them; ``literal(key)`` the driver attribute to write."""

    def __init__(self, wanted, running, live_settings, tuned):
        self.tuned = _tuned(tuned)
        self.wanted = wanted
        self.running = running
        self.live = live_settings or {}
        self.values = _wanted_values(wanted)
        now = running.values()
        for key in LIVE_SETTINGS:
            if key not in self.tuned:
                self.values[key] = now[key]

    def literal(self, key, value):
        """The attribute giving ``value`` (as QEMU runs it) to an untuned setting: the live XML's own
        where QEMU runs what it says (so an unset attribute stays unset)."""
        if key in self.tuned:
            return self.wanted.get(key)
        started = _wanted_values(self.live)
        return self.live.get(key) if started[key] == value else value

    def discard_and_zeroes(self):
        """(discard, detect_zeroes as QEMU runs it, the detect_zeroes attribute)."""
        if 'discard' in self.tuned:
            discard = effective(self.wanted)['discard']
        else:
            discard = self.running.discard
        if 'detect_zeroes' in self.tuned:
            zeroes_literal = self.wanted.get('detect_zeroes')
        else:
            zeroes_literal = self.literal('detect_zeroes', self.running.detect_zeroes)
        zeroes = detect_zeroes_mode(discard, zeroes_literal) or QEMU_DEFAULTS['detect_zeroes']
        return discard, zeroes, zeroes_literal


def plan_reopen(target, wanted, running, live_settings, refused='', tuned=None):
    """What one ``blockdev-reopen`` of the disk's chain reaches. ``wanted``: the persistent driver
    attributes; ``live_settings``: the live XML's (io must be passed as QEMU runs it);
    ``refused``: why the chain cannot be reopened ('' when it can); ``tuned``: the settings the run
    decided for this disk (None: all), every other one stays as QEMU runs it."""
    goal = _Target(wanted, running, live_settings, tuned)
    values = goal.values
    if not refused and 'cache' not in goal.tuned and running.cache == 'mixed':
        refused = WHY_MIXED
    why = {key: refused or '' for key in LIVE_SETTINGS}
    why.update(io=WHY_AIO, iothread=WHY_IOTHREAD)
    if refused:
        return _outcome(target, 'reopen', running, running, values, why, {})
    want = effective(wanted)
    if 'cache' in goal.tuned:
        direct, no_flush = want['direct'], want['no_flush']
        if no_flush and not running.believed_write_cache:
            no_flush = False
            why['cache'] = WHY_NO_FLUSH
        if running.io == 'native' and not direct:
            # aio=native stays: so does O_DIRECT (QEMU accepts native without it live, not at start).
            direct, no_flush = True, bool(running.no_flush)
            why['cache'] = WHY_NATIVE
    else:
        direct, no_flush = running.direct, running.no_flush
    discard, zeroes, zeroes_literal = goal.discard_and_zeroes()
    expected = replace(running, direct=direct, no_flush=no_flush, discard=discard, detect_zeroes=zeroes)
    if 'cache' in goal.tuned and not why['cache'] and expected.cache != values['cache']:
        why['cache'] = WHY_WRITE_CACHE % expected.cache
    if expected.detect_zeroes != values['detect_zeroes'] and not why['detect_zeroes']:
        why['detect_zeroes'] = WHY_ZEROES_DISCARD
    # The node options need direct/no-flush only (the write cache is the device's): any mode with them.
    mode = cache_mode(running.believed_write_cache, direct, no_flush) or cache_mode(
        not running.believed_write_cache, direct, no_flush)
    if mode is None:
        return _outcome(target, 'reopen', running, running, values, dict.fromkeys(LIVE_SETTINGS, WHY_MIXED), {})
    if live_settings.get('cache') is None and (direct, no_flush) == (False, False):
        mode = None                 # as libvirt started it: no cache options at all
    # A reopen that omits discard keeps the node's (unlike cache and detect-zeroes, which it resets):
    # an unset discard is passed as QEMU's default when the node runs another.
    literal = wanted.get('discard') if 'discard' in goal.tuned else live_settings.get('discard')
    default = QEMU_DEFAULTS['discard']
    discard_option = None if (literal is None and discard == default and running.discard == default) else discard
    driver = {'cache': mode, 'io': live_settings.get('io'), 'discard': discard_option, 'detect_zeroes': zeroes_literal}
    return _outcome(target, 'reopen', running, expected, values, why, driver)


def plan_restore(target, wanted, running, iothreads, live_settings=None, tuned=None):
    """What a save -> save-image-define -> restore reaches: every setting, with the write cache the
    guest believes it has (the XML's cache mode sets it at the restore). ``tuned`` as for
    ``plan_reopen``; a setting not tuned gets what QEMU runs now, which may not be what the live XML says."""
    goal = _Target(wanted, running, live_settings, tuned)
    values = goal.values
    want = effective(wanted)
    why = {key: '' for key in LIVE_SETTINGS}
    write_cache = running.believed_write_cache
    if 'cache' in goal.tuned:
        direct = want['direct']
        no_flush = want['no_flush'] if write_cache else False
        if want['no_flush'] and not write_cache:
            why['cache'] = WHY_NO_FLUSH
    else:
        direct, no_flush = running.direct, running.no_flush
    mode = cache_mode(write_cache, direct, no_flush) if None not in (direct, no_flush) else None
    blocks = '' if mode is not None else (
        "disk %s: QEMU runs cache.direct=%s cache.no-flush=%s with the guest's write cache %s, which no cache "
        "mode of a restored domain keeps" % (target, direct, no_flush, 'on' if write_cache else 'off'))
    iothread = want['iothread'] if 'iothread' in goal.tuned else running.iothread
    if iothread is not None and iothread not in iothreads:
        why['iothread'] = WHY_NO_IOTHREAD % iothread
        iothread = running.iothread
    io = goal.literal('io', running.io) if 'io' not in goal.tuned else wanted.get('io')
    discard, zeroes, zeroes_literal = goal.discard_and_zeroes()
    expected = replace(running, write_cache=write_cache, direct=bool(direct), no_flush=bool(no_flush),
                       discard=discard, detect_zeroes=zeroes, io=io or QEMU_DEFAULTS['io'], iothread=iothread,
                       read_from='live_xml', guest_write_cache=write_cache)
    if 'cache' in goal.tuned and not why['cache'] and expected.cache != values['cache']:
        why['cache'] = WHY_WRITE_CACHE % expected.cache
    if expected.detect_zeroes != values['detect_zeroes'] and not why['detect_zeroes']:
        why['detect_zeroes'] = WHY_ZEROES_DISCARD
    if 'cache' in goal.tuned:
        cache = None if (wanted.get('cache') is None and mode == 'writeback') else mode
    else:
        cache = goal.literal('cache', mode) if mode is not None else (live_settings or {}).get('cache')
    discard_literal = goal.literal('discard', discard) if 'discard' not in goal.tuned else wanted.get('discard')
    driver = {'cache': cache, 'io': io, 'discard': discard_literal, 'detect_zeroes': zeroes_literal,
              'iothread': iothread}
    return _outcome(target, 'restore', running, expected, values, why, driver, blocks)


def gains_from_restore(reopen, restore):
    """Whether a restore applies something a reopen leaves for a restart."""
    left = {p['setting'] for p in reopen.pending}
    return bool(left - {p['setting'] for p in restore.pending})


def unpaired_outcome(pair):
    return DiskOutcome(target=pair.target, method=None, status='restart_required', before={}, after={},
                       pending=[_pending('disk', None, pair.target, pair.why_unpaired)])


@dataclass
class DomainLivePlan:
    """The method chosen for one running domain and what it does to each disk."""

    name: str
    method: str | None
    disks: list = field(default_factory=list)        # DiskOutcome
    pending: list = field(default_factory=list)      # domain-level items that wait for a restart
    no_pause: str = ''                               # why a restore that would gain something is not done

    @property
    def changes(self):
        return [c for d in self.disks for c in d.changes]

    @property
    def status(self):
        changed = bool(self.changes)
        left = bool(self.pending) or any(d.pending for d in self.disks)
        return _status(changed, left)


def choose_method(name, reopens, restores, allow_pause, pending=()):
    """reopen for every disk, or - when asked and it gains something - one restore for the domain,
    unless a disk could not be restored as it must (``blocks_restore``)."""
    gains = restores is not None and any(gains_from_restore(a, b) for a, b in zip(reopens, restores))
    blocked = [r.blocks_restore for r in restores or () if r.blocks_restore]
    if allow_pause and gains and not blocked:
        return DomainLivePlan(name=name, method='restore', disks=list(restores), pending=list(pending))
    method = 'reopen' if any(d.changes for d in reopens) else None
    no_pause = '%s: no save/restore' % blocked[0] if (allow_pause and gains and blocked) else ''
    return DomainLivePlan(name=name, method=method, disks=list(reopens), pending=list(pending), no_pause=no_pause)


# --- the rules of the policy, on the running disk ------------------------------------------------

def broken_live_rules(info, outcome, storage, host, guards):
    """The rules of ``_disk_policy.DISK_RULES`` that the running disk ``info`` (its live XML) would
    break once ``outcome`` is done, through a setting the outcome changes: as ``decide_disk`` does for
    the persistent configuration, on what the running disk is (shareable, read-only, its storage).
    Returns messages ending with the rule's way out."""
    changed = {key for key in SETTINGS if outcome.before.get(key) != outcome.after.get(key)}
    if not changed or outcome.after.get('cache') == 'mixed':
        return []
    literal = {key: outcome.after.get(key) for key in SETTINGS}
    return ['%s; %s' % (message, rule.fix) for rule, message in broken_rules(info, literal, storage, host, guards)
            if rule.reads & changed]


# --- verification ----------------------------------------------------------------------------

def verify(outcome, running):
    """Differences between what a method should have reached and what QEMU reports now."""
    expected = outcome.expected
    problems = []
    for key in ('direct', 'no_flush', 'detect_zeroes', 'io', 'iothread'):
        if getattr(expected, key) != getattr(running, key):
            problems.append('%s is %s, expected %s' % (key, getattr(running, key), getattr(expected, key)))
    # Discard is visible only beside detect_zeroes=unmap; elsewhere it is what was recorded.
    if running.detect_zeroes == 'unmap' and expected.discard != 'unmap':
        problems.append('discard is unmap, expected %s' % expected.discard)
    if None not in (expected.guest_write_cache, running.guest_write_cache) and \
            expected.guest_write_cache != running.guest_write_cache:
        problems.append("the guest's write cache is %s, expected %s" % (
            'on' if running.guest_write_cache else 'off', 'on' if expected.guest_write_cache else 'off'))
    return problems


def observed(outcome, now, problems, what):
    """``outcome`` as QEMU reports it after its method (``now``), when verification found ``problems``:
    what changed is what QEMU shows changed, what it lacks waits for a restart, and ``error`` says why."""
    before, after = outcome.before, now.values()
    error = '%s: %s' % (what, '; '.join(problems))
    changes = [Change(device=outcome.target, setting=key, before=before[key], after=after[key],
                      reason='%s, without a restart' % METHOD_LABELS[outcome.method], live=True)
               for key in LIVE_SETTINGS if before[key] != after[key]]
    pending = [_pending(key, after[key], outcome.wanted[key], error)
               for key in LIVE_SETTINGS if after[key] != outcome.wanted[key]]
    return DiskOutcome(target=outcome.target, method=outcome.method if changes else None,
                       status=_status(changes, pending), before=before, after=after, driver=outcome.driver,
                       changes=changes, pending=pending, expected=now, wanted=outcome.wanted, error=error,
                       seconds=outcome.seconds, host_sync_seconds=outcome.host_sync_seconds)


# --- the save image's XML (restore) --------------------------------------------------------------

def _has_medium(disk):
    source = disk.find('source')
    return source is not None and bool(source.attrib)


def restore_xml(image_xml, outcomes, write_caches, origin='the save image XML'):
    """The save image's XML with each disk's driver attributes from ``outcomes`` (targets the restore
    changes), the live-apply record removed, and every disk with a medium given a cache mode whose
    write cache is the one its guest device runs with, whether the plan touches the disk or not: a
    restore sets each device's write cache from the XML, and a guest that turned its write cache off
    (``/sys/block/*/cache_type``) sends no flushes.

    ``write_caches``: {target: bool} from QEMU (``query-block``), read while the guest is paused. A
    disk left alone by the plan keeps its cache.direct/no-flush and gets the mode with the right write
    cache (writeback <-> writethrough, none <-> directsync). Raises PlanError when a writable disk's
    write cache is not known, or when no mode keeps it (unsafe under a guest without a write cache).
    Returns (XML text, [{'target', 'cache', 'was'}] of the disks whose mode was changed to keep it)."""
    root = parse_domain(image_xml, origin)
    by_target = {o.target: o for o in outcomes}
    kept = []
    for disk in root.findall('devices/disk'):
        target = _target(disk)[0]
        outcome = by_target.get(target)
        driver = disk.find('driver')
        if outcome is not None and outcome.driver and driver is not None:
            for key in LIVE_SETTINGS:
                set_attr(driver, key, outcome.driver.get(key))
        if not _has_medium(disk):
            continue
        writable = disk.find('readonly') is None
        believed = write_caches.get(target)
        if believed is None:
            if writable:
                raise PlanError("disk %s: QEMU does not report the write cache its guest runs with, so a restore "
                                "could turn it on; nothing was changed" % target)
            continue
        cache = driver.get('cache') if driver is not None else None
        write_cache, direct, no_flush = cache_flags(cache)
        if write_cache == believed:
            continue
        if outcome is not None and outcome.driver:
            raise PlanError('disk %s: cache=%s would change the write cache its guest runs with (%s); nothing was '
                            'changed' % (target, cache, 'on' if believed else 'off'))
        mode = cache_mode(believed, direct, no_flush)
        if mode is None or driver is None:
            if not writable:
                continue
            raise PlanError("disk %s runs cache=%s and its guest has turned its write cache %s: no cache mode keeps "
                            "both, so a restore would turn it %s; nothing was changed"
                            % (target, cache or QEMU_DEFAULTS['cache'], 'on' if believed else 'off',
                               'off' if believed else 'on'))
        set_attr(driver, 'cache', mode)
        kept.append({'target': target, 'cache': mode, 'was': cache})
    metadata = root.find('metadata')
    if metadata is not None:
        for record in metadata.findall(RECORD_TAG):
            remove_child(metadata, record)
        if not len(metadata):
            remove_child(root, metadata)
    return to_text(root), kept


# --- the record of what a reopen set ----------------------------------------------------------

def record_xml(domain_id, process, discards):
    """The live-metadata element recording the discard each top node got from a reopen, for the QEMU
    process ``process`` of the domain with id ``domain_id``. ``process`` names an object that only
    that QEMU process holds (see ``_live_apply``): a restore, a migration or a restart starts another
    process without it, even one with the same domain id and thread ids."""
    nodes = ''.join('<node name=%s discard=%s/>' % (quoteattr(n), quoteattr(d)) for n, d in sorted(discards.items()))
    return '<live id=%s process=%s>%s</live>' % (quoteattr(str(domain_id)), quoteattr(process), nodes)


def record_of(live_root):
    """(domain id, process) of the live-apply record in a live XML, or None."""
    record = live_root.find('metadata/' + RECORD_TAG)
    if record is None:
        return None
    return record.get('id'), record.get('process')


def record_is_current(live_root):
    """Whether the record may belong to the running QEMU process, judged from the live XML alone: it
    names the domain id libvirt gives the running domain. A record of an earlier process (a restore
    or a migration carried it over) names another id; one with the same id is checked on QEMU."""
    record = record_of(live_root)
    return record is not None and bool(record[0]) and record[0] == live_root.get('id')


def recorded_discards(live_root, domain_id, process):
    """{top node: discard} recorded for the QEMU process ``process`` of domain id ``domain_id``; empty
    for another process (a restore, a migration or a restart rebuilt QEMU from the XML, undoing what a
    reopen did)."""
    record = live_root.find('metadata/' + RECORD_TAG)
    if record is None or not process or record.get('process') != process or record.get('id') != str(domain_id):
        return {}
    return {n.get('name'): n.get('discard') for n in record.findall('{%s}node' % RECORD_NAMESPACE)
            if n.get('name') and n.get('discard') in ('unmap', 'ignore')}


def merged_discards(live_root, domain_id, process, discards):
    """The record after a reopen: what was recorded for this process, updated with ``discards``."""
    merged = recorded_discards(live_root, domain_id, process)
    merged.update(discards)
    return merged


# --- audit -------------------------------------------------------------------------------------

STALE_LIVE_XML = Check('stale_live_xml', 'medium', frozenset(), None,
                       'restart the domain to make it permanent, or apply it again after such an operation',
                       remedy='apply=live after a save/restore or a migration (or migrate with --xml)',
                       evidence='a save/restore, managedsave, migration without --xml or snapshot rebuilds QEMU '
                                'from the live XML')
RESTART_PENDING = Check('restart_pending', 'low', frozenset(), None, 'apply it live, or restart the domain',
                        remedy='apply=live (or live_or_pause)',
                        evidence='the persistent configuration reaches QEMU at its next start')
LIVE_ADVISORIES = (STALE_LIVE_XML, RESTART_PENDING)


def _finding(check, subject, message):
    return {'code': check.code, 'severity': check.severity, 'subject': subject, 'message': message,
            'fix': '%s %s' % (check.fixed_by, check.remedy), 'fixed_by': check.fixed_by, 'evidence': check.evidence}


def live_findings(domain, target, live_settings, running, wanted):
    """Findings about a running disk: QEMU runs what its live XML does not say (a reopen: a save,
    migration or snapshot would undo it), or not yet what the persistent config says."""
    found = []
    subject = '%s/%s' % (domain, target)
    started = running_from_live_xml(target, live_settings).values()
    stale = {k: v for k, v in running.values().items() if v != started[k]}
    if running.read_from == 'qemu' and stale:
        found.append(_finding(STALE_LIVE_XML, subject, 'QEMU runs %s, which the live XML does not say: a save/restore, '
                              'managedsave, migration without --xml or a snapshot rebuilds QEMU from the live XML '
                              'and undoes it' % ', '.join('%s=%s' % kv for kv in sorted(stale.items()))))
    wanted_values = _wanted_values(wanted)
    behind = {k: v for k, v in wanted_values.items() if running.values()[k] != v}
    if behind:
        found.append(_finding(RESTART_PENDING, subject, 'QEMU runs %s; the configuration says %s' % (
            ', '.join('%s=%s' % (k, running.values()[k]) for k in sorted(behind)),
            ', '.join('%s=%s' % kv for kv in sorted(behind.items())))))
    return found
