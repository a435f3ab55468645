"""Griffe extension of the API reference (mkdocs.yml): how the package's docstrings are shown.

* An object is documented where it is defined. The subpackages re-export their submodules'
  classes and functions (``__all__``), which would render each of them twice on a subpackage's
  page: once under the package's name and once in its submodule. Imported names are marked not
  public, so only the submodule documents them.
* Some docstrings cross-reference in reST (``:class:`RegistrationFailure```); the site renders
  Markdown, so the role is dropped and the name stays as code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):(?=`)")


class OwnMembers(griffe.Extension):
    """Marks imported names as not public and drops reST roles from docstrings."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Called by Griffe once the package ``pkg`` and its submodules are loaded."""
        objects: list[griffe.Object] = [pkg]
        while objects:
            obj = objects.pop()
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub("", obj.docstring.value)
            for member in obj.members.values():
                if member.is_alias:
                    member.public = False
                else:
                    objects.append(member)
