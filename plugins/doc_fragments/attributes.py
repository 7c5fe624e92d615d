# -*- coding: utf-8 -*-
# Copyright: walrus.postgres contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations


class ModuleDocFragment(object):
    """Attribute values every walrus module shares; each module states its own check_mode."""

    # Every walrus module.
    DOCUMENTATION = r"""
options: {}
attributes:
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

    # The modules of the walrus.postgres.walrus action group (meta/runtime.yml), which
    # module_defaults can give the repository options once.
    ACTION_GROUP = r"""
options: {}
attributes:
  action_group:
    membership:
      - walrus.postgres.walrus
"""

    # Modules that run on the target without an action plugin, async included.
    MODULE = r"""
options: {}
attributes:
  action:
    support: none
  async:
    support: full
  bypass_host_loop:
    support: none
"""
