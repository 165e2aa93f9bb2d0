# Copyright (c) 2026, kvmio.tuning contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
name: fleet_report
short_description: Aggregate kvm_io_info results of many hosts into a fleet report
version_added: 0.1.0
description:
  - Takes a dictionary of host name to M(kvmio.tuning.kvm_io_info) result and returns the fleet
    report as data, or rendered with O(format) as Markdown or a self-contained HTML page with charts.
author:
  - kvmio.tuning maintainers (@kvmio)
options:
  _input:
    description: Host name to kvm_io_info result.
    type: dict
    required: true
  format:
    description: V(data) (a dict, for JSON), V(markdown) or V(html).
    type: str
    choices: [data, markdown, html]
    default: data
  before:
    description: An earlier report (format V(data)), to show policy coverage before and after.
    type: dict
  bench:
    description: Host name to M(kvmio.tuning.kvm_io_bench) result, for benchmark bars.
    type: dict
'''

EXAMPLES = r'''
- name: Write the fleet report as HTML
  ansible.builtin.copy:
    content: "{{ facts_by_host | kvmio.tuning.fleet_report(format='html') }}"
    dest: /srv/reports/kvm-io.html
    mode: "0644"
'''

RETURN = r'''
_value:
  description: The report (a dict with C(hosts) and C(totals)), or its Markdown or HTML text.
  type: raw
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.kvmio.tuning.plugins.module_utils._report import ReportInputError, build_report, to_html, \
    to_markdown


def fleet_report(hosts, format='data', before=None, bench=None):  # pylint: disable=redefined-builtin
    if not isinstance(hosts, dict):
        raise AnsibleFilterError('fleet_report takes a dict of host name to kvm_io_info result, not %s'
                                 % type(hosts).__name__)
    try:
        report = build_report(hosts, before=before, bench=bench)
    except ReportInputError as err:
        raise AnsibleFilterError('fleet_report: %s' % err) from None
    if format == 'markdown':
        return to_markdown(report)
    if format == 'html':
        return to_html(report)
    if format == 'data':
        return report
    raise AnsibleFilterError("fleet_report format must be data, markdown or html, not '%s'" % format)


class FilterModule:
    def filters(self):
        return {'fleet_report': fleet_report}
