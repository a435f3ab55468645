rule download_record:
    """A Zenodo record's files, streamed with resume, retried and md5-verified (MANIFEST.tsv last)."""
    output:
        manifest="resources/zenodo/{record}/MANIFEST.tsv",
    log:
        "resources/zenodo/logs/download_{record}.log",
    benchmark:
        "resources/zenodo/benchmarks/download_{record}.tsv"
    retries: 2
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=600,
    params:
        download=rule_params(params.download_params, "record"),
    script:
        "../../scripts/download.py"


rule unpack_record:
    """The record's archives unpacked (path-checked) next to it."""
    input:
        manifest=rules.download_record.output.manifest,
    output:
        directory("resources/zenodo/{record}/unpacked"),
    log:
        "resources/zenodo/logs/unpack_{record}.log",
    benchmark:
        "resources/zenodo/benchmarks/unpack_{record}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    script:
        "../../scripts/unpack_record.py"
