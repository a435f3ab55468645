"""Configuration: JSON-schema validation with defaults, and clear messages for mistakes.

Where the schema lives
----------------------
The one copy of the schema is package data, ``comir/schemas/config.schema.yaml``, read through
:mod:`importlib.resources` (:data:`.schema.SCHEMA`). An installed ``comir`` (a wheel, not only an
editable install of this checkout) can therefore validate a configuration, and the Snakefile, the
``config-docs`` target and the tests all read it through this package, so nothing can drift.

Snakemake's convention of ``workflow/schemas/`` exists for ``snakemake.utils.validate(config,
"schemas/...")``, which this workflow does not use: :func:`.validate.validate_config` adds what
that cannot (the per-dataset rules of :mod:`.rules`, variants merged onto their dataset,
registration parameters checked by the methods, one message listing every problem).
``snakemake --lint`` and the workflow catalog do not require the folder either. A copy there
would be a second source (or a symlink, which ``git archive`` and some file systems do not
keep), so there is none.

Its modules
-----------
One concern each, each importing only those above it in this list:

* :mod:`.schema`: the packaged schema, validation that fills in defaults, one line per problem,
  the defaults of a section, :class:`.schema.ConfigError`;
* :mod:`.variants`: a variant merged onto its dataset, where its networks come from, ensembles;
* :mod:`.expand`: the variants of sweeps and the test sets of stress series;
* :mod:`.rules`: the rules a JSON schema cannot express (datasets, variants, pools, apply jobs);
* :mod:`.validate`: :func:`.validate.validate_config` and :func:`.validate.load_config`;
* :mod:`.reference`: the table of every key in config/README.md (``make config-docs``).

The modules are imported by their own names (``from comir.config.validate import
validate_config``): this package imports nothing, so what reads only the schema
(:mod:`.schema`) does not import the stages whose settings the rules check.
"""
