"""Run one measurement in a fresh process, so that peak memory and caches start from zero."""

import multiprocessing


def _child(queue, function, args):
    try:
        queue.put(function(*args))
    except BaseException as error:  # report, do not leave the parent waiting
        queue.put({"error": f"{type(error).__name__}: {error}"})


def isolated(function, *args):
    """``function(*args)`` in a spawned process; an exception comes back as ``{"error": ...}``."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, function, args))
    process.start()
    result = queue.get()
    process.join()
    return result
