"""What the tests share besides fixtures (those are in tests/conftest.py).

``tests`` is on ``sys.path`` (``pythonpath`` in pyproject.toml), so tests import these as
``from helpers.registration_cases import make_pair``:

* :mod:`helpers.project` - the checkout's root, the tiny and the demo configuration;
* :mod:`helpers.snakemake` - the workflow's command line and the jobs a dry run plans (a test
  that uses them is a ``workflow`` test, see tests/conftest.py and docs/testing.md);
* :mod:`helpers.browser` - headless Chromium over the DevTools protocol (``browser`` tests);
* :mod:`helpers.registration_cases` - known-transform image pairs of the registration tests;
* :mod:`helpers.training` - a tiny network and an aligned two-modality pair for training tests;
* :mod:`helpers.fake_records`, :mod:`helpers.fake_zenodo` - fake Zenodo records and a loopback
  Zenodo server.
"""
