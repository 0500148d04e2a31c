"""The page store on disk and its Python API, read from a store built from the committed pages."""

from __future__ import annotations

import json
import shutil

import datasets
import pandas as pd
import pytest

from docrerank.errors import DocrerankError
from docrerank.pages import IngestSettings, Page, PageStore, TextSource
from docrerank.pages.render import image_hash
from tests.helpers import PDF3, SCAN

PAGE_FIELDS = list(Page.model_fields)


def test_len_and_iteration_yield_pages(committed_store):
    pages = list(committed_store)
    assert len(committed_store) == 4 == len(pages)
    assert all(isinstance(p, Page) for p in pages)
    assert len({p.page_id for p in pages}) == 4
    assert sorted(p.source_path.rsplit("/", 1)[1] for p in pages) == [PDF3.name] * 3 + [SCAN.name]


def test_lookup_by_id(committed_store):
    for page in committed_store:
        assert page.page_id in committed_store
        assert committed_store.get(page.page_id) == page
        assert committed_store[page.page_id] == page
    assert "0" * 32 not in committed_store
    with pytest.raises(KeyError, match="not in the store"):
        committed_store["0" * 32]
    with pytest.raises(KeyError):
        committed_store.get("nope")


def test_image_is_the_recorded_page(committed_store):
    for page in committed_store:
        image = committed_store.image(page)
        assert image.mode == "RGB"
        assert image.size == (page.width, page.height)
        assert image_hash(image) == page.page_id  # the id is the content hash of the stored pixels
        assert committed_store.image(page.page_id).size == image.size
        assert committed_store.image_path(page) == committed_store.root / page.image_path
        assert page.image_path == f"images/{page.page_id[:2]}/{page.page_id}.png"


def test_pages_of_a_document_in_page_order(committed_store):
    [pdf_doc] = {p.doc_id for p in committed_store if p.source_path.endswith(".pdf")}
    pages = committed_store.pages_of(pdf_doc)
    assert [p.page_index for p in pages] == [0, 1, 2]
    assert {p.doc_id for p in pages} == {pdf_doc}
    assert len(committed_store.doc_ids) == 2
    assert committed_store.pages_of("f" * 16) == []


def test_to_pandas(committed_store):
    frame = committed_store.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == PAGE_FIELDS
    assert len(frame) == 4
    assert sorted(frame["text_source"]) == ["ocr", "text_layer", "text_layer", "text_layer"]
    assert frame["page_id"].tolist() == committed_store.page_ids


def test_pages_parquet_reads_with_pandas(committed_store):
    frame = pd.read_parquet(committed_store.root / "pages.parquet")
    assert list(frame.columns) == PAGE_FIELDS
    assert frame["page_id"].tolist() == committed_store.page_ids
    row = frame.iloc[0]
    assert Page(**row.to_dict()) == committed_store[row["page_id"]]


def test_pages_parquet_loads_with_hugging_face_datasets(committed_store, tmp_path):
    data = datasets.load_dataset(
        "parquet",
        data_files=str(committed_store.root / "pages.parquet"),
        split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert data.num_rows == 4
    assert data.column_names == PAGE_FIELDS
    assert data["page_id"] == committed_store.page_ids
    assert any("Fstats" in text for text in data["text"])


def test_manifest_records_the_settings_and_counts(committed_store):
    manifest = json.loads((committed_store.root / "manifest.json").read_text())
    assert manifest["settings"] == IngestSettings().output_settings()
    assert manifest["fingerprint"] == IngestSettings().fingerprint()
    assert manifest["format_version"] == 1
    assert (manifest["documents"], manifest["pages"]) == (2, 4)
    assert manifest["pages_by_text_source"] == {"text_layer": 3, "ocr": 1, "none": 0}
    assert manifest["tesseract_version"].startswith("tesseract ")
    assert manifest["pdfium_version"]
    assert manifest["created_at"] <= manifest["updated_at"]
    assert committed_store.manifest.pages == 4
    assert all(p.text_source in (TextSource.TEXT_LAYER, TextSource.OCR) for p in committed_store)


def test_errors_file_is_empty_when_all_went_well(committed_store):
    assert (committed_store.root / "errors.jsonl").read_text() == ""


def test_open_a_folder_that_is_not_a_store(tmp_path):
    with pytest.raises(DocrerankError) as info:
        PageStore.open(tmp_path)
    message = str(info.value)
    assert "is not a page store" in message and "manifest.json" in message
    assert f"docrerank ingest INPUT --out {tmp_path}" in message


def test_open_a_missing_folder(tmp_path):
    with pytest.raises(DocrerankError, match="not a page store"):
        PageStore.open(tmp_path / "missing")


def test_open_a_store_of_another_format(committed_store, tmp_path):
    manifest = json.loads((committed_store.root / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DocrerankError, match="store format 99"):
        PageStore.open(tmp_path)


def test_a_store_with_a_manifest_but_no_pages_yet_is_empty(committed_store, tmp_path):
    shutil.copy2(committed_store.root / "manifest.json", tmp_path / "manifest.json")
    store = PageStore.open(tmp_path)
    assert len(store) == 0 and list(store) == [] and store.doc_ids == []
