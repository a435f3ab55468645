"""One docstring style for the public API: numpydoc, every parameter in a ``Parameters`` section.

The API reference of the documentation site (docs/reference/api/) renders these docstrings with
mkdocstrings' numpy parser; a public function or method whose parameters are not all listed there
shows a page a user cannot call from. Private names (a leading underscore), ``*args`` and
``**kwargs``, ``self`` and ``cls`` are exempt; so are objects imported from elsewhere (they are
checked where they are defined).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterator

import pytest

import comir

SECTION = re.compile(r"^(?P<indent>[ \t]*)(?P<title>[A-Z][A-Za-z ]+)\n(?P=indent)-{3,}[ \t]*$", re.M)
GOOGLE_HEADER = re.compile(
    r"^[ \t]*(Args|Arguments|Returns|Yields|Raises|Attributes|Example|Examples|Note|Notes):[ \t]*$", re.M
)
SUBPACKAGES = sorted({name.split(".")[1] for name in (m.name for m in pkgutil.walk_packages(comir.__path__, "comir."))})


def section_names(docstring: str, title: str) -> set[str]:
    """The names a numpydoc section ``title`` documents (``x : int`` and ``x, y : float`` lines)."""
    docstring = inspect.cleandoc(docstring)
    headers = list(SECTION.finditer(docstring))
    names: set[str] = set()
    for header, following in zip(headers, [*headers[1:], None]):
        if header["title"] != title:
            continue
        body = docstring[header.end() : following.start() if following else len(docstring)]
        for line in body.splitlines():
            entry = re.match(r"^(?P<names>\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::.*)?$", line)
            if entry and not line.startswith((" ", "\t")):
                names.update(name.strip().lstrip("*") for name in entry["names"].split(","))
    return names


def parameters(function: Callable) -> list[str]:
    """The parameters a caller names: not ``self``/``cls``, not ``*args``/``**kwargs``."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return []
    skipped = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in signature.parameters.values() if p.name not in ("self", "cls") and p.kind not in skipped]


def public_callables(subpackage: str) -> Iterator[tuple[str, Callable]]:
    """Each public function and public method defined in ``comir.<subpackage>`` (or the module)."""
    root = importlib.import_module(f"comir.{subpackage}")
    modules = [root]
    if hasattr(root, "__path__"):
        modules += [importlib.import_module(m.name) for m in pkgutil.walk_packages(root.__path__, f"{root.__name__}.")]
    for module in modules:
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
            elif inspect.isclass(obj):
                for member_name, member in vars(obj).items():
                    function = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                    if not member_name.startswith("_") and inspect.isfunction(function):
                        yield f"{module.__name__}.{name}.{member_name}", function


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_public_functions_document_every_parameter_numpydoc_style(subpackage):
    undocumented = []
    for qualified, function in public_callables(subpackage):
        names = parameters(function)
        if not names:
            continue
        documented = section_names(function.__doc__ or "", "Parameters")
        if not set(names) <= documented:
            undocumented.append(f"{qualified}: {sorted(set(names) - documented)}")
    assert not undocumented, f"{len(undocumented)} without numpydoc Parameters entries:\n" + "\n".join(undocumented)


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_no_google_style_sections(subpackage):
    google = [q for q, f in public_callables(subpackage) if GOOGLE_HEADER.search(inspect.cleandoc(f.__doc__ or ""))]
    assert not google, f"Google-style sections (write numpydoc): {google}"


def test_the_section_parser_on_a_known_docstring():
    def documented(a, b, c=1, *args, **kwargs):
        """Summary.

        Parameters
        ----------
        a, b : int
            Two of them.
        c : int, optional
            Entries are not indented; this line is.

        Returns
        -------
        d : int
            Not a parameter.
        """

    assert section_names(documented.__doc__, "Parameters") == {"a", "b", "c"}
    assert parameters(documented) == ["a", "b", "c"]
    assert section_names("Summary.\n\nArgs:\n    a: one.\n", "Parameters") == set()
