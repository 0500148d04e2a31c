"""PageContent and PageLike: at home in pages/, still importable from prompts/, and no backend imported."""

from __future__ import annotations

import subprocess
import sys

import docrerank.prompts
import docrerank.prompts.requests
from docrerank.pages import PageContent, PageLike


def test_the_old_import_paths_give_the_same_names():
    assert docrerank.prompts.PageContent is PageContent
    assert docrerank.prompts.requests.PageContent is PageContent
    assert docrerank.prompts.requests.PageLike is PageLike


def test_importing_the_pages_imports_no_backend():
    code = "import sys, docrerank.pages; print('docrerank.backends' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
