"""The sample documents: pinned Debian packages of real PDF manuals."""

from __future__ import annotations

import re
import shutil

import pypdfium2 as pdfium
import pytest

from docrerank.errors import DocrerankError
from docrerank.samples import default_cache_dir, fetch_samples, sample_packages
from tests.helpers import run_cli


def test_corpus_lists_ten_packages_with_839_pages():
    packages = sample_packages()
    assert len(packages) == 10
    assert sum(p.pdf_pages for p in packages) == 839
    assert len({p.name for p in packages}) == 10
    assert all(re.fullmatch(r"[0-9a-f]{64}", p.sha256) for p in packages)
    assert all(p.name.startswith("r-cran-") for p in packages)
    [strucchange] = [p for p in packages if p.name == "r-cran-strucchange"]
    assert (strucchange.version, strucchange.pdf_pages) == ("1.5-3-1", 17)
    [vcd] = [p for p in packages if p.name == "r-cran-vcd"]
    assert vcd.folder_name == "r-cran-vcd_1%3a1.4-11-1"  # no ':' in folder names


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCRERANK_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("DOCRERANK_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "docrerank")


def _need_apt():
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found: the sample packages are fetched with Debian's apt")


def test_an_unknown_package_is_refused(tmp_path):
    _need_apt()
    with pytest.raises(DocrerankError, match="unknown sample package"):
        fetch_samples(cache_dir=tmp_path, names=["r-cran-nope"])


@pytest.mark.slow
def test_fetch_one_sample_package(tmp_path):
    _need_apt()
    [pdf] = fetch_samples(names=["r-cran-strucchange"], cache_dir=tmp_path)
    assert pdf.name == "strucchange-intro.pdf"
    assert pdf.is_relative_to(tmp_path / "samples" / "r-cran-strucchange_1.5-3-1")
    document = pdfium.PdfDocument(str(pdf))
    try:
        assert len(document) == 17  # as corpus.txt says
    finally:
        document.close()
    # fetched once, then reused from the cache
    assert fetch_samples(names=["r-cran-strucchange"], cache_dir=tmp_path) == [pdf]
    listed = run_cli("samples", "--package", "r-cran-strucchange", "--cache-dir", tmp_path)
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.split() == [str(pdf)]
