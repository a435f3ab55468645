"""Zenodo records: download with resume, verify (size and md5), unpack; online or offline.

The paper's data sets are Zenodo records of several gigabytes. Downloads break, compute nodes
often have no internet, and a silently corrupt archive would poison every later stage. So every
file is streamed to ``<key>.part`` and resumed with an HTTP ``Range`` request after an
interruption, network errors are retried with exponential back-off, and a file is used only after
its size and md5 match the record; a mismatching file is deleted and reported. When Zenodo cannot
be reached, the error says what to place where.

Where a record comes from
-------------------------
Its *file list* (keys, sizes, md5 checksums), from the first of:

1. ``<local_dir>/record.json``, when ``local_dir`` is given and holds one;
2. ``<mirror>/record.json``, when ``mirror`` is given;
3. the REST API ``<base_url>/api/records/<id>`` (default ``https://zenodo.org``);
4. when 2 or 3 cannot be reached: ``<dest>/record.json`` saved by an earlier run.

Its *files*:

* with ``local_dir``: ``<local_dir>/<key>``, checked against the file list (when one is known)
  and hard-linked (copied across file systems) into ``dest``. These files are the user's: they
  are never modified or deleted, and nothing is downloaded; a missing file is an error that lists
  what to put there.
* with ``mirror``: ``<mirror>/<key>``;
* otherwise the download link of each file in the record's JSON.

A mirror is one record's folder, given as an ``http(s)://`` or ``file://`` URL or a plain path::

    <mirror>/record.json   the JSON of https://zenodo.org/api/records/<id>, saved as it is
    <mirror>/<key>         every file of the record under its key (its name in the record)

A local directory has the same layout (``record.json`` optional but recommended: without it, and
without the API, the files cannot be verified and the manifest says so). The destination folder
that :func:`.download.download_record` fills has that layout too, so a finished download can be copied to an
offline machine and used there as ``local_dir`` or ``mirror``::

    <dest>/record.json     the record's JSON, written as soon as it is known
    <dest>/<key>           every file, verified
    <dest>/<key>.part      a partial download, resumed by the next run
    <dest>/MANIFEST.tsv    key, size, md5, verified; written last, so that it exists only when
                           every file is in place and verified (the Snakemake rule's output)

Why not pooch or snakemake-storage-plugin-zenodo
------------------------------------------------
Both were read for this (pooch 1.9.0, snakemake-storage-plugin-zenodo 0.1.5); neither does a
part as well as the code here, so neither is a dependency.

* pooch (``retrieve``/``fetch`` with a known hash, ``doi:`` URLs, ``load_registry_from_doi``)
  verifies md5 as well, and skips a file already present with the right hash. But it streams into
  a randomly named temporary file that is deleted on any error, so an interrupted multi-gigabyte
  transfer starts again from zero (no ``Range``). Its retries wait 1, 2, ... 10 s and also repeat
  hopeless requests (a 404) and whole downloads after a checksum mismatch. It knows no ``file://``
  (a mirror or ``local_dir`` would need a custom downloader), and offline it raises the bare
  ``requests`` error. A record is found through doi.org and must be on zenodo.org (for one of
  the two JSON shapes it even builds ``https://zenodo.org/records/...`` itself): no base URL, so
  no mirror and no loopback Zenodo for the tests; sizes are not read. Its progress bar needs
  tqdm and is made for terminals, not Snakemake log files. What it would replace, ``md5sum``, is
  seven lines.
* snakemake-storage-plugin-zenodo makes each file a storage object
  (``zenodo://record/<id>/<key>``), so the keys must be known when the Snakefile is parsed (here
  they come from the record's JSON, at run time). It requires an access token even for public records, hard-wires
  zenodo.org (or its sandbox), and reads the current API shape only. Its download is
  ``requests`` without ``stream=True``: the whole file is held in memory before it is written,
  straight to the final path (no ``.part``, no resume). The md5 is checked, but a mismatch or a
  404 is retried like a network error (3 tries, by tenacity). There is no progress, no mirror or
  local directory, no offline message.

What remains hand-written is therefore what the pipeline needs and these lack: resume by
``Range``, retries only where trying again can help, ``file://`` mirrors and local directories
verified against ``record.json``, the saved file list for offline reruns, and messages that say
what to place where; all of it tested against a loopback Zenodo (``tests/test_download.py``).

Its modules
-----------
One concern each, each importing only those above it in this list:

* :mod:`.record`: the file list (names, errors, :class:`.record.Record`), parsed from the JSON;
* :mod:`.files`: files on disk: md5, verification against the record, hard links, ``MANIFEST.tsv``;
* :mod:`.transfer`: the network: one file streamed with ``Range`` resume, retries, progress;
* :mod:`.offline`: a local directory, the saved file list, what to place where;
* :mod:`.download`: :func:`.download.fetch_record` and :func:`.download.download_record`;
* :mod:`.unpack`: archives extracted with path checks (:func:`.unpack.unpack_record`).

The modules are imported by their own names (``from comir.data.zenodo.download import
download_record``): this package imports nothing.
"""
