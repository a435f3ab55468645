"""Run one measurement in a fresh process, so that peak memory and caches start from zero.

``isolated(function, *args, src=path)`` imports the ``comir`` package from ``path`` in that
process: :mod:`baseline` extracts an earlier revision's ``src/`` there, so the code before and
after a change is measured in the same run, on the same machine and load.
"""

import multiprocessing
import sys


def _child(queue, function, args, src):
    try:
        if src is not None:
            sys.path.insert(0, str(src))  # before anything imports comir
        queue.put(function(*args))
    except BaseException as error:  # report, do not leave the parent waiting
        queue.put({"error": f"{type(error).__name__}: {error}"})


def isolated(function, *args, src=None):
    """``function(*args)`` in a spawned process; an exception comes back as ``{"error": ...}``."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, function, args, src))
    process.start()
    result = queue.get()
    process.join()
    return result
