"""nbval settings for the notebooks: fast mode, and outputs that are never compared."""

import os

os.environ.setdefault("VIDGEN_NB_FAST", "1")  # kernels inherit it: tiny preset, few steps


def pytest_collectstart(collector):
    # Widget views, HTML and stderr (progress bars, warnings) vary from run to run.
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("text/html", "application/javascript", "stderr",
                                   "application/vnd.jupyter.widget-view+json")
