"""Snakemake script: a Zenodo record's files, downloaded (or linked from local_dir) and verified.

``params.download`` is the record's configuration (record, url, mirror, local_dir, retries,
timeout_s; other keys are ignored); the files go next to ``output.manifest``, written last.
"""

from pathlib import Path

from comir.data.zenodo.download import download_record
from comir.data.zenodo.record import MANIFEST_NAME
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
settings = snakemake.params.download
manifest = Path(snakemake.output.manifest)
if manifest.name != MANIFEST_NAME:
    raise ValueError(f"the download rule's output must be named {MANIFEST_NAME}, not {manifest.name}")
options = {
    name: settings[name] for name in ("mirror", "local_dir", "retries", "timeout_s") if settings.get(name) is not None
}
if settings.get("url"):
    options["base_url"] = settings["url"]
download_record(settings["record"], manifest.parent, **options)
