# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Table tests of the disk policy decisions (no XML, no I/O)."""

from __future__ import annotations

import ast

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._disk_policy import CACHE_CHOICES, DETECT_ZEROES_CHOICES, \
    DISCARD_CHOICES, IO_CHOICES, DiskInfo, DiskSettings, Guards, decide_disk, effective_settings
from ansible_collections.kvmio.tuning.plugins.module_utils._support import StorageFacts
from ansible_collections.kvmio.tuning.plugins.module_utils._support import HostSupport

MODERN = HostSupport(qemu=(7, 2, 0), libvirt=(9, 0, 0), kernel=(6, 1, 0), io_uring_enabled=True,
                     qemu_has_io_uring=True)
OLD = HostSupport(qemu=(4, 2, 0), libvirt=(6, 0, 0), kernel=(4, 19, 0), io_uring_enabled=False,
                  qemu_has_io_uring=False)
EXT4 = StorageFacts(path='/img/a.qcow2', kind='file', fstype='ext4', mountpoint='/', odirect=True, shared=False)
ZFS = StorageFacts(path='/tank/a.qcow2', kind='file', fstype='zfs', mountpoint='/tank', odirect=False, shared=False,
                   detail='open with O_DIRECT refused (EINVAL)')
NFS = StorageFacts(path='/nfs/a.qcow2', kind='file', fstype='nfs4', mountpoint='/nfs', odirect=True, shared=True)
MISSING = StorageFacts(path='/gone.qcow2', kind='missing', detail='/gone.qcow2 does not exist on this host')


def disk(**kw):
    base = dict(target='vda', bus='virtio', path='/img/a.qcow2', current={})
    base.update(kw)
    return DiskInfo(**base)


@pytest.mark.parametrize('storage, host, want', [
    (EXT4, MODERN, {'cache': 'none', 'io': 'native'}),
    (ZFS, MODERN, {'cache': 'writeback', 'io': 'io_uring'}),
    (ZFS, OLD, {'cache': 'writeback', 'io': 'threads'}),
    (MISSING, MODERN, {'cache': 'writeback', 'io': 'io_uring'}),
    (None, OLD, {'cache': 'writeback', 'io': 'threads'}),
])
def test_auto_picks_cache_from_odirect_and_io_from_cache(storage, host, want):
    decision = decide_disk(disk(), DiskSettings(), storage, host)
    assert decision.wanted == want
    assert not decision.errors


def test_auto_never_picks_writethrough_or_unsafe():
    for storage in (EXT4, ZFS, MISSING, None):
        decision = decide_disk(disk(current={'cache': 'writethrough'}), DiskSettings(), storage, MODERN)
        assert decision.wanted['cache'] in ('none', 'writeback')


def test_unprobed_storage_warns():
    decision = decide_disk(disk(), DiskSettings(), MISSING, MODERN)
    assert decision.warnings == ['vda (/img/a.qcow2): storage could not be probed (/gone.qcow2 does not exist on '
                                 'this host); cache=auto chose writeback']


def test_explicit_none_on_storage_without_odirect_fails_naming_disk_and_filesystem():
    decision = decide_disk(disk(path='/tank/a.qcow2'), DiskSettings(cache='none'), ZFS, MODERN)
    assert decision.errors == ['vda (/tank/a.qcow2): cache=none needs O_DIRECT, which zfs refuses (open with '
                               'O_DIRECT refused (EINVAL)); the domain would not start; use cache=writeback or '
                               'cache=auto']
    assert 'cache' not in decision.wanted


def test_native_with_writeback_is_refused():
    decision = decide_disk(disk(), DiskSettings(cache='writeback', io='native'), EXT4, MODERN)
    assert decision.errors == ['vda (/img/a.qcow2): io=native needs cache=none or directsync (O_DIRECT), '
                               'not cache=writeback; libvirt refuses it; set io too (io=auto picks a valid mode)']


def test_existing_native_becomes_invalid_when_only_cache_changes():
    decision = decide_disk(disk(current={'cache': 'none', 'io': 'native'}), DiskSettings(cache='writeback', io=None),
                           EXT4, MODERN)
    assert decision.errors and 'io=native needs cache=none or directsync' in decision.errors[0]


def test_io_uring_refused_where_unsupported():
    decision = decide_disk(disk(), DiskSettings(cache='writeback', io='io_uring'), EXT4, OLD)
    assert decision.errors == ["vda (/img/a.qcow2): io=io_uring is not available: io='io_uring' needs QEMU 4.2.0 "
                               "< 5.0.0, libvirt 6.0.0 < 6.3.0, kernel 4.19.0 < 5.1.0, io_uring disabled in the "
                               "kernel, QEMU built without liburing; use io=auto"]


def test_unsafe_needs_allow_unsafe():
    refused = decide_disk(disk(), DiskSettings(cache='unsafe', io=None), EXT4, MODERN)
    assert refused.errors == ['vda (/img/a.qcow2): cache=unsafe ignores flushes and loses data on a host crash; '
                              'set allow_unsafe=true to allow it']
    allowed = decide_disk(disk(), DiskSettings(cache='unsafe', io=None), EXT4, MODERN, Guards(allow_unsafe=True))
    assert allowed.wanted == {'cache': 'unsafe'} and not allowed.errors


def test_detect_zeroes_unmap_needs_discard_unmap():
    refused = decide_disk(disk(), DiskSettings(detect_zeroes='unmap'), EXT4, MODERN)
    assert refused.errors == ['vda (/img/a.qcow2): detect_zeroes=unmap needs discard=unmap (QEMU refuses it '
                              'otherwise); set discard=unmap, or detect_zeroes=auto']
    auto = decide_disk(disk(), DiskSettings(discard='unmap', detect_zeroes='auto'), EXT4, MODERN)
    assert auto.wanted['detect_zeroes'] == 'unmap' and auto.wanted['discard'] == 'unmap'
    auto_off = decide_disk(disk(), DiskSettings(detect_zeroes='auto'), EXT4, MODERN)
    assert 'detect_zeroes' not in auto_off.wanted


def test_discard_on_old_virtio_blk_warns():
    decision = decide_disk(disk(), DiskSettings(discard='unmap'), EXT4, HostSupport(qemu=(3, 1, 0)))
    assert decision.wanted['discard'] == 'unmap'
    assert decision.warnings == ['vda (/img/a.qcow2): discard=unmap has no effect on bus virtio']


def test_migratable_refuses_writeback_on_local_storage_but_not_on_nfs():
    local = decide_disk(disk(), DiskSettings(cache='writeback', io=None), EXT4, MODERN, Guards(migratable=True))
    assert local.errors == ['vda (/img/a.qcow2): cache=writeback on non-shared storage (ext4) makes the domain '
                            'unmigratable (migratable=true); use cache=none/directsync on storage with O_DIRECT, '
                            'or set migratable=false']
    shared = decide_disk(disk(path='/nfs/a.qcow2'), DiskSettings(cache='writeback', io=None), NFS, MODERN,
                         Guards(migratable=True))
    assert not shared.errors


# The disk-kind table of the docs, one row each.
@pytest.mark.parametrize('kind, want, skipped', [
    (dict(device='cdrom', bus='ide', target='hdc'), {}, 'removable media (cdrom): left alone'),
    (dict(device='floppy', bus='fdc', target='fda'), {}, 'removable media (floppy): left alone'),
    (dict(device='lun', bus='scsi', target='sda', source_type='block'), {},
     "SCSI passthrough (device='lun'): left alone"),
    (dict(driver_name='tap'), {}, "driver 'tap' is not QEMU's: left alone"),
    (dict(source_type='vhostuser', path=None), {}, "source type 'vhostuser' has no cache/io settings to tune"),
    (dict(path=None), {}, 'no source (empty or unresolved): left alone'),
    (dict(readonly=True), {'cache': 'none', 'io': 'native'}, ''),
    (dict(shareable=True), {'cache': 'none', 'io': 'native', 'discard': 'unmap'}, ''),
    (dict(source_type='network', protocol='rbd', path=None), {'cache': 'writeback', 'discard': 'unmap'}, ''),
    (dict(source_type='block', path='/dev/vg/lv'), {'cache': 'none', 'io': 'native', 'discard': 'unmap'}, ''),
])
def test_disk_kinds_get_only_what_makes_sense(kind, want, skipped):
    decision = decide_disk(disk(**kind), DiskSettings(discard='unmap'), EXT4, MODERN)
    assert decision.skipped == skipped
    assert decision.wanted == want


def test_a_policy_for_every_disk_keeps_shareable_disks_safe_and_says_why():
    # A fleet-wide cache=writeback does not fail the host on a shared disk: the disk gets (or keeps) a mode
    # that is safe for sharing, with the reason in the result.
    given = decide_disk(disk(shareable=True), DiskSettings(cache='writeback'), EXT4, MODERN)
    assert not given.errors and given.wanted == {'cache': 'none', 'io': 'native'}
    assert given.reasons['cache'] == 'shareable disk: sharing needs cache=none or directsync'
    kept = decide_disk(disk(shareable=True, current={'cache': 'directsync'}), DiskSettings(cache='writeback'),
                       EXT4, MODERN)
    assert not kept.errors and 'cache' not in kept.wanted
    assert kept.reasons['cache'] == 'shareable disk: keeps cache=directsync (sharing needs O_DIRECT)'
    no_odirect = decide_disk(disk(shareable=True, current={'cache': 'none'}), DiskSettings(), ZFS, MODERN)
    assert 'cache' not in no_odirect.wanted


def test_a_per_disk_request_for_a_shared_disk_is_taken_literally_and_refused():
    refused = decide_disk(disk(shareable=True), DiskSettings(cache='writeback'), EXT4, MODERN,
                          disk_specific=frozenset(('cache',)))
    assert refused.errors[0] == ('vda (/img/a.qcow2): a shareable disk must use cache=none or directsync, not '
                                 'writeback (each host caches its own view); use cache=none or directsync')


def test_nothing_wanted_when_disk_already_matches():
    decision = decide_disk(disk(current={'cache': 'none', 'io': 'native'}), DiskSettings(), EXT4, MODERN)
    assert decision.wanted == {}
    assert decision.reasons['cache'] == 'auto: O_DIRECT works on ext4'


def test_network_disk_with_native_io_gets_a_valid_io_under_auto():
    # libvirt refuses io=native without an O_DIRECT cache on every disk, network ones included: cache=auto
    # gives a network disk writeback, so its io=native must go (it does no file AIO anyway).
    rbd = disk(source_type='network', protocol='rbd', path=None, current={'cache': 'none', 'io': 'native'})
    decision = decide_disk(rbd, DiskSettings(), None, MODERN)
    assert not decision.errors
    assert decision.wanted == {'cache': 'writeback', 'io': 'threads'}
    kept = decide_disk(rbd, DiskSettings(cache='none'), None, MODERN)
    assert not kept.errors and kept.wanted == {}
    refused = decide_disk(rbd, DiskSettings(cache='writeback', io=None), None, MODERN)
    assert refused.errors and 'io=native needs cache=none or directsync' in refused.errors[0]


def test_a_problem_the_disk_already_has_is_a_warning_unless_the_disk_is_redefined():
    broken = disk(current={'cache': 'writeback', 'io': 'native'})
    untouched = decide_disk(broken, DiskSettings(cache=None, io=None), EXT4, MODERN)
    assert not untouched.errors and untouched.wanted == {}
    assert untouched.warnings == ['vda (/img/a.qcow2): io=native needs cache=none or directsync (O_DIRECT), not '
                                  'cache=writeback; libvirt refuses it (left as it is)']
    # Redefining the disk for another setting would hand libvirt a definition it refuses.
    touched = decide_disk(broken, DiskSettings(cache=None, io=None, discard='unmap'), EXT4, MODERN)
    assert touched.errors and touched.errors[0].endswith('set io too (io=auto picks a valid mode)')


@pytest.mark.parametrize('current, host, want', [
    ({}, MODERN, {'cache': 'writeback', 'io': 'threads', 'discard': 'ignore', 'detect_zeroes': 'off',
                  'guest_write_cache': True, 'odirect': False}),
    ({}, HostSupport(qemu=(1, 1, 0)), {
        'cache': 'writethrough', 'io': 'threads', 'discard': 'ignore', 'detect_zeroes': 'off',
        'guest_write_cache': False, 'odirect': False}),
    ({}, HostSupport(), {'cache': 'writeback', 'io': 'threads', 'discard': 'ignore', 'detect_zeroes': 'off',
                         'guest_write_cache': True, 'odirect': False}),
    ({'cache': 'none', 'io': 'native', 'discard': 'unmap', 'detect_zeroes': 'unmap'}, MODERN,
     {'cache': 'none', 'io': 'native', 'discard': 'unmap', 'detect_zeroes': 'unmap', 'guest_write_cache': True,
      'odirect': True}),
    ({'cache': 'directsync'}, MODERN, {'cache': 'directsync', 'io': 'threads', 'discard': 'ignore',
                                       'detect_zeroes': 'off', 'guest_write_cache': False, 'odirect': True}),
    ({'cache': 'writethrough'}, MODERN, {'cache': 'writethrough', 'io': 'threads', 'discard': 'ignore',
                                         'detect_zeroes': 'off', 'guest_write_cache': False, 'odirect': False}),
    ({'cache': 'unsafe'}, MODERN, {'cache': 'unsafe', 'io': 'threads', 'discard': 'ignore', 'detect_zeroes': 'off',
                                   'guest_write_cache': True, 'odirect': False}),
])
def test_effective_settings_resolve_what_qemu_runs(current, host, want):
    assert effective_settings(disk(current=current), host=host) == want


@pytest.mark.parametrize('settings, want', [
    (DiskSettings(cache='directsync'), {'cache': 'directsync', 'io': 'native'}),
    (DiskSettings(cache='writethrough'), {'cache': 'writethrough', 'io': 'io_uring'}),
    (DiskSettings(cache='writeback', io='threads'), {'cache': 'writeback', 'io': 'threads'}),
    (DiskSettings(cache=None, io=None, discard='ignore', detect_zeroes='off'),
     {'discard': 'ignore', 'detect_zeroes': 'off'}),
    (DiskSettings(cache=None, io=None, detect_zeroes='on'), {'detect_zeroes': 'on'}),
])
def test_explicit_values_are_written_as_asked(settings, want):
    decision = decide_disk(disk(), settings, EXT4, MODERN)
    assert not decision.errors and decision.wanted == want
    assert all(decision.reasons[key] == 'as requested' for key in want if key != 'io' or settings.io != 'auto')


def test_every_setting_value_is_decided_by_a_test():
    # Each choice of each setting is asked for in this file (a new choice needs a case here).
    with open(__file__, encoding='utf-8') as handle:
        tree = ast.parse(handle.read())
    seen = {(kw.arg, kw.value.value) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'DiskSettings'
            for kw in node.keywords if isinstance(kw.value, ast.Constant)}
    seen |= set(vars(DiskSettings()).items())     # the defaults: auto
    choices = {'cache': CACHE_CHOICES, 'io': IO_CHOICES, 'discard': DISCARD_CHOICES,
               'detect_zeroes': DETECT_ZEROES_CHOICES}
    wanted = {(key, value) for key, values in choices.items() for value in values if value != 'keep'}
    assert wanted <= seen, wanted - seen
