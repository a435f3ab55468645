"""CoMIR: contrastive multimodal image representations for registration.

data -> transformed test set -> training (one network per modality) -> CoMIRs
-> registration on CoMIRs and on the originals -> statistics -> report;
and the apply stage: a trained model registers folders of unaligned pairs.
"""

import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# The library lives in src/comir; jobs (local, conda or cluster) import it from here.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.getenv("PYTHONPATH")]))
)

from comir.config.validate import validate_config  # noqa: E402

# --configfile is deep-merged onto a `configfile:` directive, which would mix the
# demo dataset into every user's run; so the demo is the default only when no
# configuration was given at all.
if not config:

    configfile: os.path.join(workflow.basedir, "config", "demo.yaml")


validate_config(config)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset=alternatives(DATASETS),
    variant=alternatives(names_of(config, "variants")),
    source=alternatives(
        [ORIGINAL, *names_of(config, "variants"), *names_of(config, "translation")]
    ),
    translator=alternatives(names_of(config, "translation")) or "(?!)",
    testset=alternatives(names_of(config, "testsets")),
    run=alternatives(names_of(config, "registration")),
    direction="B_to_A|A_to_B",
    record="[0-9]+",
    reference="A|B",
    job=alternatives(list(APPLY)) or "(?!)",
    batch="[0-9]+",
    pool=alternatives(list(config["pools"])) or "(?!)",
    series=alternatives(names_of(config, "stress")) or "(?!)",


include: "workflow/rules/download.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/testset.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/comir.smk"
include: "workflow/rules/translation.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/accr.smk"
include: "workflow/rules/confidence.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/stress.smk"
include: "workflow/rules/representation.smk"
include: "workflow/rules/apply.smk"


rule all:
    default_target: True
    input:
        files(targets.final_targets(config)),
