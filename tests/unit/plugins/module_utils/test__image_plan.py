# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""qcow2 planning: sizes, validation, preallocation state, drift and the chosen action."""

from __future__ import annotations

import pytest

from ansible_collections.kvmio.tuning.plugins.module_utils._errors import PlanError
from ansible_collections.kvmio.tuning.plugins.module_utils._domain_xml import parse_domain
from ansible_collections.kvmio.tuning.plugins.module_utils._image_plan import ImageUse, WantedImage, \
    check_disk_image, check_users, decide_format, drift_of, effective_preallocation, human_size, image_disks, volume_keys, \
    image_size, parse_size, plan_image, planned_facts, preallocation_state, validate_wanted

G = 1 << 30


@pytest.mark.parametrize('text, size', [('10G', 10 * G), ('512M', 512 << 20), ('64k', 65536), ('1.5T', 3 << 39),
                                        ('4096', 4096), ('2GiB', 2 * G), (1024, 1024)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize('text', ['ten', '10X', '-1G', '0', ''])
def test_parse_size_refuses_garbage(text):
    with pytest.raises(PlanError) as err:
        parse_size(text)
    assert "'%s'" % text in err.value.msg or 'larger than 0' in err.value.msg


def test_human_size():
    assert [human_size(s) for s in (10 * G, 65536, 1000)] == ['10G', '64K', '1000']


@pytest.mark.parametrize('wanted, version, message', [
    (WantedImage(size=G, cluster_size=3000), (7, 2, 0), 'cluster_size 3000 must be a power of two from 512 to 2M'),
    (WantedImage(size=G, cluster_size=4 << 20), (7, 2, 0), 'cluster_size 4M must be a power of two'),
    (WantedImage(size=G, extended_l2=True, cluster_size=4096), (7, 2, 0),
     'cluster_size 4K must be a power of two from 16K to 2M with extended_l2'),
    (WantedImage(size=G, extended_l2=True), (5, 1, 0), 'extended_l2 needs QEMU 5.2.0 or later; this host has 5.1.0'),
    (WantedImage(size=G, lazy_refcounts=True, compat='0.10'), (7, 2, 0), 'lazy_refcounts needs compat 1.1'),
    (WantedImage(size=G, backing_file='/base.qcow2'), (7, 2, 0),
     'preallocation=metadata with a backing file needs extended_l2=true'),
])
def test_validation_refuses_what_qemu_refuses(wanted, version, message):
    with pytest.raises(PlanError) as err:
        validate_wanted(wanted, version)
    assert message in err.value.msg


def test_validation_accepts_overlay_with_extended_l2():
    validate_wanted(WantedImage(size=None, backing_file='/base.qcow2', extended_l2=True, cluster_size=128 << 10),
                    (7, 2, 0))


# What `qemu-img map --output=json` prints for each preallocation mode (QEMU 7.2).
THIN = [{'start': 0, 'length': 8 << 20, 'depth': 0, 'present': False, 'zero': True, 'data': False}]
METADATA = [{'start': 0, 'length': 8 << 20, 'depth': 0, 'present': True, 'zero': True, 'data': True,
             'offset': 327680}]
FALLOC = [{'start': 0, 'length': 8 << 20, 'depth': 0, 'present': True, 'zero': False, 'data': True,
           'offset': 327680}]
WRITTEN_THIN = [{'start': 0, 'length': 65536, 'depth': 0, 'zero': False, 'data': True, 'offset': 327680},
                {'start': 65536, 'length': 8 << 20, 'depth': 0, 'zero': True, 'data': False}]
OVERLAY = [{'start': 0, 'length': 8 << 20, 'depth': 1, 'zero': True, 'data': False}]


@pytest.mark.parametrize('extents, state', [(THIN, 'off'), (METADATA, 'metadata'), (FALLOC, 'falloc'),
                                            (WRITTEN_THIN, 'off'), (OVERLAY, 'off'), ([], 'off')])
def test_preallocation_state(extents, state):
    assert preallocation_state(extents) == state


def facts(**kw):
    base = {'format': 'qcow2', 'virtual_size': G, 'actual_size': 200000, 'cluster_size': 65536, 'compat': '1.1',
            'lazy_refcounts': False, 'extended_l2': False, 'backing_file': None, 'backing_format': None,
            'preallocation': 'metadata'}
    base.update(kw)
    return base


def test_matching_image_has_no_drift_and_more_preallocation_is_fine():
    assert drift_of(facts(), WantedImage(size=G)) == {}
    assert drift_of(facts(preallocation='falloc'), WantedImage(size=G)) == {}
    assert drift_of(facts(preallocation='off'), WantedImage(size=G, preallocation='off')) == {}


def test_drift_lists_each_field():
    drift = drift_of(facts(preallocation='off', cluster_size=2 << 20, lazy_refcounts=True),
                     WantedImage(size=2 * G))
    assert drift == {'virtual_size': (G, 2 * G), 'lazy_refcounts': (True, False), 'preallocation': ('off', 'metadata')}
    assert drift_of(facts(format='raw'), WantedImage(size=G)) == {'format': ('raw', 'qcow2')}


@pytest.mark.parametrize('have, wanted, resize, convert, action', [
    (None, WantedImage(size=G), 'keep', False, 'create'),
    (facts(), WantedImage(size=G), 'keep', False, 'none'),
    (facts(), WantedImage(size=None), 'keep', False, 'none'),
    (facts(), WantedImage(size=2 * G), 'keep', False, 'drift'),
    (facts(), WantedImage(size=2 * G), 'grow', False, 'grow'),
    (facts(preallocation='off'), WantedImage(size=G), 'keep', False, 'drift'),
    (facts(preallocation='off'), WantedImage(size=G), 'keep', True, 'convert'),
    (facts(format='raw', compat=None), WantedImage(size=None), 'keep', True, 'convert'),
])
def test_plan_actions(have, wanted, resize, convert, action):
    assert plan_image('/img/a.qcow2', have, wanted, resize, convert).action == action


def test_shrink_is_always_refused():
    for resize in ('keep', 'grow'):
        with pytest.raises(PlanError) as err:
            plan_image('/img/a.qcow2', facts(virtual_size=2 * G), WantedImage(size=G), resize, True)
        assert err.value.msg == ("/img/a.qcow2 is 2G and the requested size is 1G: images are never shrunk (the "
                                 "guest's data at the end would be lost); ask for a size of at least 2G")


def test_create_needs_a_size():
    with pytest.raises(PlanError) as err:
        plan_image('/img/new.qcow2', None, WantedImage(size=None))
    assert err.value.msg == '/img/new.qcow2 does not exist and no size was given to create it'


def test_drift_reason_names_the_switches():
    plan = plan_image('/img/a.qcow2', facts(preallocation='off'), WantedImage(size=2 * G))
    assert plan.reason == 'left alone; set resize=grow to grow it or convert=true to rewrite it with the requested settings'


@pytest.mark.parametrize('text, size', [('1000', 1024), ('1.1G', 1181116416), ('512', 512), ('1', 512),
                                        ('1.5T', 3 << 39), ('4097', 4608)])
def test_image_sizes_are_whole_sectors_as_qemu_img_makes_them(text, size):
    assert image_size(text) == size


def test_sizes_are_exact():
    assert parse_size('1.1G') == 1181116006          # as qemu-img reads it; a float gives the same here, not always
    assert parse_size('0.1K') == 102 and parse_size('3.3M') == 3460300


@pytest.mark.parametrize('wanted, has_backing, state', [
    (WantedImage(size=G), False, 'metadata'),
    (WantedImage(size=G), True, 'off'),
    (WantedImage(size=G, extended_l2=True), True, 'metadata'),
    (WantedImage(size=G, extended_l2=True, preallocation='full'), True, 'metadata'),
    (WantedImage(size=G, extended_l2=True, preallocation='off'), True, 'off'),
])
def test_an_overlay_shows_at_most_what_it_can_hold(wanted, has_backing, state):
    assert effective_preallocation(wanted, has_backing) == state


def test_an_overlay_is_not_drift_for_preallocation_it_cannot_have():
    overlay = facts(backing_file='base.qcow2', backing_format='qcow2', preallocation='off')
    assert drift_of(overlay, WantedImage(size=None)) == {}
    assert drift_of(overlay, WantedImage(size=None, extended_l2=True)) == {
        'extended_l2': (False, True), 'preallocation': ('off', 'metadata')}
    converted = facts(backing_file='base.qcow2', backing_format='qcow2', extended_l2=True)
    assert drift_of(converted, WantedImage(size=None, extended_l2=True, preallocation='falloc')) == {}


def test_backing_format_drift():
    overlay = facts(backing_file='base.raw', backing_format='qcow2', preallocation='off')
    wanted = WantedImage(size=None, preallocation='off', backing_file='base.raw', backing_format='raw')
    assert drift_of(overlay, wanted) == {'backing_format': ('qcow2', 'raw')}


@pytest.mark.parametrize('wanted, message', [
    (WantedImage(size=G, preallocation='off', backing_file='nbd://host:1', backing_format='raw'),
     "backing_file 'nbd://host:1' is not a local file name"),
    (WantedImage(size=G, preallocation='off', backing_file='json:{"driver":"raw"}', backing_format='raw'),
     'is not a local file name'),
    (WantedImage(size=G, preallocation='off', backing_file='', backing_format='raw'), 'is not a local file name'),
    (WantedImage(size=G, preallocation='off', backing_file='b.img', backing_format='raw,data_file=/x'),
     "backing_format 'raw,data_file=/x' is not one of qcow2, raw"),
])
def test_backing_files_and_formats_are_validated(wanted, message):
    with pytest.raises(PlanError) as err:
        validate_wanted(wanted, (7, 2, 0))
    assert message in err.value.msg


DOMAIN = """<domain type='qemu'><name>d</name><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/a.qcow2'/><target dev='vda'/></disk>
  <disk type='file' device='disk'><source file='/i/noformat.img'/><target dev='vdb'/></disk>
  <disk type='block' device='lun'><driver name='qemu' type='raw'/><source dev='/dev/sdz'/><target dev='sda'/></disk>
  <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/i/cd.iso'/><target dev='hdc'/></disk>
  <disk type='file' device='cdrom'><target dev='hdd'/></disk>
  <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='p' volume='v'/><target dev='vdc'/></disk>
  <disk type='network' device='disk'><source protocol='nbd' name='x'/><target dev='vdd'/></disk>
</devices></domain>"""


def test_every_local_disk_of_a_domain_with_its_declared_format():
    assert image_disks(parse_domain(DOMAIN), {('p', 'v'): '/pool/v.qcow2'}) == [
        ('/i/a.qcow2', 'qcow2', 'disk', None), ('/i/noformat.img', 'raw', 'disk', None), ('/dev/sdz', 'raw', 'lun', None),
        ('/i/cd.iso', 'raw', 'cdrom', None), ('/pool/v.qcow2', 'qcow2', 'disk', None)]


BACKING_STORE = """<domain type='qemu'><name>bs</name><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/top.qcow2'/>
    <backingStore type='file'><format type='qcow2'/><source file='/i/mid.qcow2'/>
      <backingStore type='block'><format type='raw'/><source dev='/dev/sdy'/>
        <backingStore/>
      </backingStore>
    </backingStore>
    <target dev='vda'/></disk>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/other.qcow2'/>
    <backingStore type='volume'><format type='raw'/><source pool='p' volume='gone'/></backingStore>
    <target dev='vdb'/></disk>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/nofmt.qcow2'/>
    <backingStore type='file'><source file='/i/nofmt-base'/></backingStore>
    <target dev='vdc'/></disk>
</devices></domain>"""


def test_a_declared_backing_store_chain_counts_level_by_level_in_its_format():
    """Third review of issue 14, G2: libvirt gives QEMU the <backingStore> chain the XML declares,
    whatever the top image's header says; its files were reported unused. An unresolvable volume (here
    in the chain) makes its users unknown (path None, naming it)."""
    assert image_disks(parse_domain(BACKING_STORE), {}) == [
        ('/i/top.qcow2', 'qcow2', 'disk', None), ('/i/mid.qcow2', 'qcow2', 'disk', '/i/top.qcow2'),
        ('/dev/sdy', 'raw', 'disk', '/i/mid.qcow2'),
        ('/i/other.qcow2', 'qcow2', 'disk', None),
        (None, 'raw', 'disk', "volume 'gone' of pool 'p' cannot be resolved to a file (an inactive pool, a renamed "
                              "volume, or a libvirt without that pool)"),
        ('/i/nofmt.qcow2', 'qcow2', 'disk', None), ('/i/nofmt-base', 'raw', 'disk', '/i/nofmt.qcow2')]
    assert volume_keys(parse_domain(BACKING_STORE)) == [('p', 'gone')]


def test_a_volume_disk_that_cannot_be_resolved_is_listed_without_a_path():
    assert image_disks(parse_domain(DOMAIN), {})[-1] == (
        None, 'qcow2', 'disk', "volume 'v' of pool 'p' cannot be resolved to a file (an inactive pool, a renamed "
                               "volume, or a libvirt without that pool)")


FIRMWARE_DOMAIN = """<domain type='qemu'><name>uefi</name>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash' format='qcow2'>/usr/share/OVMF/OVMF_CODE_4M.qcow2</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.qcow2' format='qcow2'>/var/lib/libvirt/qemu/nvram/uefi_VARS.qcow2</nvram>
    <kernel>/boot/vmlinuz</kernel><initrd>boot/initrd.img</initrd><dtb>/boot/board.dtb</dtb>
    <acpi><table type='slic'>/var/lib/libvirt/acpi/slic.dat</table></acpi>
  </os>
  <sysinfo type='fwcfg'><entry name='opt/com.example/blob' file='/srv/blob.bin'/><entry name='opt/x'>text</entry></sysinfo>
  <devices/>
</domain>"""


def test_the_host_files_a_domain_boots_from_count_as_its_files():
    """Second review of issue 14, F8: an NVRAM file (and the loader, kernel, initrd, device tree, ACPI
    table, fw_cfg blob and NVRAM template) was removable as unused."""
    assert image_disks(parse_domain(FIRMWARE_DOMAIN)) == [
        ('/usr/share/OVMF/OVMF_CODE_4M.qcow2', 'qcow2', 'loader', None),
        ('/var/lib/libvirt/qemu/nvram/uefi_VARS.qcow2', 'qcow2', 'NVRAM', None),
        ('/usr/share/OVMF/OVMF_VARS_4M.qcow2', 'qcow2', 'NVRAM template', None),
        ('/boot/vmlinuz', 'raw', 'kernel', None), ('/boot/initrd.img', 'raw', 'initrd', None),
        ('/boot/board.dtb', 'raw', 'device tree', None), ('/var/lib/libvirt/acpi/slic.dat', 'raw', 'ACPI table', None),
        ('/srv/blob.bin', 'raw', 'fw_cfg file', None)]
    network = parse_domain(FIRMWARE_DOMAIN.replace(
        "<nvram template='/usr/share/OVMF/OVMF_VARS_4M.qcow2' format='qcow2'>/var/lib/libvirt/qemu/nvram/uefi_VARS.qcow2"
        "</nvram>", "<nvram type='network'><source protocol='iscsi' name='iqn.2013-07.com.example:iscsi-nopool'>"
        "<host name='example.com' port='6000'/></source></nvram>"))
    assert [role for _p, _f, role, _via in image_disks(network)] == [
        'loader', 'kernel', 'initrd', 'device tree', 'ACPI table', 'fw_cfg file']
    by_source = parse_domain(FIRMWARE_DOMAIN.replace(
        "format='qcow2'>/var/lib/libvirt/qemu/nvram/uefi_VARS.qcow2</nvram>",
        "type='file'><source file='/var/lib/libvirt/qemu/nvram/by-source.fd'/></nvram>"))
    assert ('/var/lib/libvirt/qemu/nvram/by-source.fd', 'raw', 'NVRAM', None) in image_disks(by_source)


def test_a_host_file_user_is_named_by_its_role():
    nvram = ImageUse('uefi', False, 'raw', role='NVRAM')
    with pytest.raises(PlanError, match=r'^/n/v.fd is a file of domain uefi \(as its NVRAM\); remove it'):
        check_users('/n/v.fd', 'remove', [nvram], 'raw', force=False)


RAW_USER = ImageUse('db', False, 'raw')
QCOW2_USER = ImageUse('web', False, 'qcow2')
OVERLAY_USER = ImageUse('ci', False, 'raw', via='/i/top.qcow2')
RUNNING = ImageUse('live', True, 'qcow2', via='/i/top.qcow2')


@pytest.mark.parametrize('uses, option, found, result', [
    ([RAW_USER], 'auto', 'qcow2', ('raw', 'domain')),              # a guest-written header does not count
    ([QCOW2_USER], 'auto', None, ('qcow2', 'domain')),
    ([], 'auto', 'qcow2', ('qcow2', 'header')),
    ([], 'auto', None, ('raw', 'header')),
    (None, 'auto', None, ('raw', 'header')),
    ([], 'raw', 'qcow2', ('raw', 'source_format')),
    ([RAW_USER], 'raw', 'qcow2', ('raw', 'domain')),
    ([], 'raw', 'vmdk', ('raw', 'source_format')),
])
def test_the_format_comes_from_the_domains_first(uses, option, found, result):
    assert decide_format('/i/x', uses, option, found) == result


@pytest.mark.parametrize('uses, option, found, message', [
    ([RAW_USER, QCOW2_USER], 'auto', None, 'domains disagree on the format of /i/x: web as qcow2; db as raw'),
    ([RAW_USER], 'qcow2', None, 'source_format=qcow2, but domain db reads /i/x as raw'),
    ([ImageUse('old', False, 'vmdk')], 'auto', None, '/i/x is a vmdk image to domain old'),
    ([], 'auto', 'vmdk', '/i/x looks like a vmdk image, which qcow2_create does not read'),
])
def test_format_conflicts_are_refused(uses, option, found, message):
    with pytest.raises(PlanError) as err:
        decide_format('/i/x', uses, option, found)
    assert err.value.msg.startswith(message)


@pytest.mark.parametrize('fmt, size, ok', [('raw', 512, True), ('raw', 13, False), ('raw', 0, False),
                                           ('raw', 1000, False), ('qcow2', 13, True), ('raw', 16 << 20, True)])
def test_a_raw_disk_is_whole_sectors(fmt, size, ok):
    if ok:
        check_disk_image('/i/x', fmt, size)
    else:
        with pytest.raises(PlanError):
            check_disk_image('/i/x', fmt, size)


@pytest.mark.parametrize('action, uses, fmt, force, message', [
    ('convert', [RUNNING], 'qcow2', True, '/i/x is in use by running domain live (through /i/top.qcow2), so it is '
                                          'not converted'),
    ('grow', [RUNNING], 'qcow2', False, 'so it is not grown'),
    ('remove', [RUNNING], 'qcow2', True, 'so it is not removed'),
    ('convert', [RAW_USER], 'raw', True, '/i/x is read as raw by domain db: converted to qcow2'),
    ('convert', [OVERLAY_USER], 'raw', False, '/i/x is read as raw by domain ci (through /i/top.qcow2)'),
    ('remove', [QCOW2_USER], 'qcow2', False,
     '/i/x is a disk of domain web; remove it from the domain first, or set force=true'),
    ('remove', None, 'qcow2', False, 'cannot check whether a domain uses /i/x (libvirt cannot be asked)'),
    ('convert', None, 'raw', False, 'cannot check whether a domain reads /i/x as another format than raw'),
    # M5: libvirt down, and the file's first bytes say qcow2 (a guest may have written them into a raw disk).
    ('convert', None, 'qcow2', False, 'cannot check whether a domain reads /i/x as another format than qcow2 '
                                      '(libvirt cannot be asked); set source_format'),
])
def test_users_refuse_what_would_change_under_them(action, uses, fmt, force, message):
    with pytest.raises(PlanError) as err:
        check_users('/i/x', action, uses, fmt, force)
    assert message in err.value.msg, err.value.msg


UNKNOWN = ['domain far, disk /hung/far.qcow2: the read of /hung/far.qcow2 did not finish within 10 s']


@pytest.mark.parametrize('action, uses, unknown, message', [
    # M2/M4: a domain whose chain could not be read to its end may use the file unseen.
    ('remove', [], UNKNOWN, 'cannot check whether a domain uses /i/x (domain far, disk /hung/far.qcow2: the read'),
    ('convert', [QCOW2_USER], UNKNOWN, 'cannot check whether a domain reads /i/x as another format than qcow2 '
                                       '(domain far, disk /hung/far.qcow2'),
    ('remove', [RUNNING], UNKNOWN, 'is in use by running domain live'),       # what is known still refuses first
])
def test_unknown_users_refuse_removal_and_conversion(action, uses, unknown, message):
    with pytest.raises(PlanError) as err:
        check_users('/i/x', action, uses, 'qcow2', False, unknown)
    assert message in err.value.msg, err.value.msg
    if not uses:
        check_users('/i/x', action, uses, 'qcow2', True, unknown)              # force overrides
    if action == 'convert':
        check_users('/i/x', action, uses, 'qcow2', False, unknown, vouched=True)


@pytest.mark.parametrize('action, uses, fmt, force', [
    ('convert', [QCOW2_USER], 'qcow2', False),       # a thin qcow2 disk of a stopped domain: the usual conversion
    ('convert', [], 'raw', False),
    ('convert', None, 'qcow2', True),
    ('convert', None, 'raw', True),
    ('grow', [QCOW2_USER], 'qcow2', False),
    ('grow', None, 'qcow2', False),                  # libvirt down: QEMU's own locks still guard running domains
    ('remove', [QCOW2_USER], 'qcow2', True),
    ('remove', None, 'qcow2', True),
    ('remove', [], 'raw', False),
])
def test_users_allow_what_is_safe(action, uses, fmt, force):
    check_users('/i/x', action, uses, fmt, force)


def test_planned_facts_are_what_a_real_run_reports():
    created = planned_facts(None, WantedImage(size=G), 'create', False)
    assert created['virtual_size'] == G and created['preallocation'] == 'metadata' and created['cluster_size'] == 65536
    overlay = planned_facts(facts(backing_file='b', preallocation='off'), WantedImage(size=None), 'convert', True)
    assert overlay['preallocation'] == 'off' and overlay['backing_file'] == 'b'
    assert planned_facts(facts(), WantedImage(size=None), 'remove', False) is None
    assert planned_facts(facts(), WantedImage(size=None), 'none', False) == facts()
