"""Encoders: the bundled offline ones give sensible output; hub loaders work on tiny local models
and fail with one clear error when the Hub is unreachable. Nothing here downloads."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from gera.encoders import (DEFAULT_ENCODERS, default_encoders, get_encoder, list_encoders,
                           load_efficientnet_lite0_classifier, load_mobilenet_v2_classifier)
from gera.encoders.throughput import measure_throughput
from gera.errors import GeraError

skimage_data = pytest.importorskip("skimage.data")

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    return Image.fromarray(skimage_data.chelsea())


@pytest.fixture(scope="module")
def coffee() -> Image.Image:
    return Image.fromarray(skimage_data.coffee())


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- bundled offline encoders -------------------------------------------------------------------

def test_mobilenet_v2_classifier_knows_the_cat(cat):
    classifier = load_mobilenet_v2_classifier()
    inputs = get_encoder("mobilenet_v2:224", device="cpu").prepare([cat])
    with torch.inference_mode():
        assert int(classifier(inputs).argmax()) in CAT_CLASSES


def test_efficientnet_lite0_classifier_knows_the_cat(cat):
    classifier = load_efficientnet_lite0_classifier()
    inputs = get_encoder("efficientnet_lite0", device="cpu").prepare([cat])
    with torch.inference_mode():
        assert int(classifier(inputs).argmax()) in CAT_CLASSES


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_image_features_are_sensible(name, cat, coffee):
    encoder = get_encoder(name, device="cpu")
    blurred = cat.filter(ImageFilter.GaussianBlur(1.5))
    grey = cat.convert("L")
    out = encoder.embed([cat, cat, blurred, coffee, grey])
    assert out.shape == (5, 1280) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out[0], out[1])
    assert _cosine(out[0], out[2]) > _cosine(out[0], out[3])
    assert _cosine(out[0], out[4]) > _cosine(out[0], out[3])


def test_image_size_suffix_and_canonical_names():
    small = get_encoder("mobilenet_v2", device="cpu")
    assert get_encoder("mobilenet_v2:112", device="cpu") is small  # one load per process
    large = get_encoder("mobilenet_v2:224", device="cpu")
    assert (small.name, large.name) == ("mobilenet_v2", "mobilenet_v2:224")
    assert small.cache_key != large.cache_key
    assert large.prepare([Image.new("RGB", (300, 200))]).shape == (1, 3, 224, 224)


def test_transparent_images_go_on_white():
    encoder = get_encoder("mobilenet_v2", device="cpu")
    transparent = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    white = Image.new("RGB", (40, 40), "white")
    np.testing.assert_allclose(encoder.embed([transparent]), encoder.embed([white]), atol=1e-5)


def test_progress_is_called_after_every_batch(cat):
    calls = []
    get_encoder("mobilenet_v2", device="cpu").embed([cat] * 5, batch_size=2,
                                                    progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_minilm_semantics_and_batch_order():
    encoder = get_encoder("minilm", device="cpu")
    texts = ["a photo of a cat", "a picture of a kitten", "a stock market report",
             "a very long sentence that is much longer than all the others in this little batch"]
    out = encoder.embed(texts, batch_size=2)
    assert out.shape == (4, 384) and out.dtype == np.float32
    assert _cosine(out[0], out[1]) > _cosine(out[0], out[2]) + 0.3
    # Batches are formed by length; rows must still come back in input order.
    for i, text in enumerate(texts):
        np.testing.assert_allclose(out[i], encoder.embed([text])[0], atol=1e-5)


def test_encoders_reject_the_other_modality(cat):
    with pytest.raises(GeraError, match="PIL image"):
        get_encoder("mobilenet_v2", device="cpu").embed(["a cat"])
    with pytest.raises(GeraError, match="str"):
        get_encoder("minilm", device="cpu").embed([cat])


# --- registry -----------------------------------------------------------------------------------

def test_unknown_name_lists_the_known_ones():
    with pytest.raises(GeraError) as err:
        get_encoder("resnet9000")
    for name in ("mobilenet_v2", "efficientnet_lite0", "minilm", "hf:", "openclip:"):
        assert name in str(err.value)


@pytest.mark.parametrize("name, modality, match", [
    ("minilm", "image", "text encoder"),
    ("mobilenet_v2", "text", "image encoder"),
    ("minilm:224", None, "no ':<size>'"),
    ("mobilenet_v2:big", None, "whole number"),
    ("mobilenet_v2", "audio", "Unknown modality"),
    ("minilm", "speech", "text encoder"),
])
def test_bad_requests_are_explained(name, modality, match):
    with pytest.raises(GeraError, match=match):
        get_encoder(name, modality=modality)


def test_list_encoders_offers_the_defaults():
    assert set(DEFAULT_ENCODERS.values()) <= set(list_encoders())
    for modality in ("image", "speech"):
        assert set(default_encoders(modality)) <= set(list_encoders())
    assert list_encoders("text") == ["minilm", "phonetic"]
    assert list_encoders("image") == ["mobilenet_v2", "efficientnet_lite0"]


def test_unavailable_device_is_explained():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(GeraError, match="not available"):
        get_encoder("mobilenet_v2", device="cuda")


# --- hf: and openclip: loaders on tiny local models ---------------------------------------------

@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer

    path = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "cat", "dog", "the"]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(path)
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    path = tmp_path_factory.mktemp("tiny-vit")
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    ViTModel(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def test_hf_text_model_from_a_folder(tiny_bert):
    encoder = get_encoder(f"hf:{tiny_bert}", device="cpu")
    assert (encoder.modality, encoder.dim) == ("text", 32)
    out = encoder.embed(["a cat", "the dog of the photo of a cat"])
    assert out.shape == (2, 32) and np.isfinite(out).all()
    # Masked mean pooling: padding added by a longer neighbour changes nothing.
    np.testing.assert_allclose(out[0], encoder.embed(["a cat"])[0], atol=1e-5)
    assert "files=" in encoder.cache_key  # a replaced local model gets a new cache key


def test_hf_image_model_from_a_folder(tiny_vit, cat, coffee):
    encoder = get_encoder(f"hf:{tiny_vit}", device="cpu")
    assert (encoder.modality, encoder.dim) == ("image", 32)
    out = encoder.embed([cat, coffee, cat.convert("L")])
    assert out.shape == (3, 32) and np.isfinite(out).all()
    with pytest.raises(GeraError, match="image model"):
        get_encoder(f"hf:{tiny_vit}", modality="text")


def test_throughput_report_on_a_tiny_model(tiny_vit, cat):
    report = measure_throughput(get_encoder(f"hf:{tiny_vit}", device="cpu"), [cat] * 6,
                                batch_size=4)
    assert report["items"] == 6 and report["pipeline_items_per_s"] > 0
    assert report["ratio"] == pytest.approx(report["pipeline_items_per_s"]
                                            / report["bare_items_per_s"])


def test_openclip_towers_of_a_tiny_registered_model(tmp_path, cat):
    import open_clip

    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                           "layers": 1}}
    (tmp_path / "gera-tiny-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "gera-tiny-clip.json")

    image_tower = get_encoder("openclip:gera-tiny-clip:none", device="cpu")
    text_tower = get_encoder("openclip:gera-tiny-clip", modality="text", device="cpu")
    assert image_tower.name == "openclip:gera-tiny-clip"
    assert text_tower.name == "openclip-text:gera-tiny-clip"
    assert text_tower.module is image_tower.module  # one load serves both towers
    assert image_tower.embed([cat, cat.convert("L")]).shape == (2, 16)
    assert text_tower.embed(["a cat", "a dog"]).shape == (2, 16)
    assert "random-init=" in image_tower.cache_key  # random weights never share cached rows


# --- no hub -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["hf:gera-test/surely-not-cached", "openclip:ViT-B-32:openai",
                                  "openclip:hf-hub:gera-test/surely-not-cached"])
def test_unreachable_hub_gives_one_clear_error(name):
    with pytest.raises(GeraError) as err:
        get_encoder(name, device="cpu")
    message = str(err.value)
    assert "Hugging Face Hub" in message and "unreachable" in message
    assert "mobilenet_v2" in message and "minilm" in message  # the offline alternatives
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_unknown_openclip_tag_lists_the_tags():
    with pytest.raises(GeraError, match="laion2b_s34b_b79k"):
        get_encoder("openclip:ViT-B-32:no-such-tag", device="cpu")
