"""Tasks: splits are disjoint, sized and seeded as documented; items load; bad folders fail well."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gera.data import get_task, list_tasks
from gera.data.common import fill
from gera.data.emoji import Emoji
from gera.data.emoji_render import EmojiRenderer
from gera.data.fashion_mnist import CLASS_NAMES
from gera.errors import GeraError

REPO = Path(__file__).resolve().parents[1]


def a_sides(split, zero_shot_apart: bool = True):
    """A-side index sets of a split that must not overlap (a folder's zero-shot test classifies
    its test-pair images, so there those two sets coincide instead)."""
    out = {"train": split.train_pairs[:, 0], "val": split.val_pairs[:, 0],
           "unpaired": split.unpaired_a, "test": split.test_pairs[:, 0]}
    if split.zero_shot is not None and zero_shot_apart:
        out["zero_shot"] = split.zero_shot.a_indices
    return out


def assert_disjoint(task, sides: dict, keys: list[str]):
    """No two named index sets share an item, by index or by cache key (same key = same content)."""
    names = list(sides)
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            kx = {keys[j] for j in sides[x]}
            ky = {keys[j] for j in sides[y]}
            assert not kx & ky, f"{task.name}: {x} and {y} share items"


def assert_seeding(task, budget):
    s1, s2, other = task.split(budget, 1), task.split(budget, 1), task.split(budget, 2)
    for field in ("train_pairs", "val_pairs", "unpaired_a", "unpaired_b", "test_pairs"):
        assert np.array_equal(getattr(s1, field), getattr(s2, field)), field
    assert not np.array_equal(s1.train_pairs, other.train_pairs)


# --- fashion-mnist -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fashion():
    return get_task("fashion-mnist", n_test=500)


@pytest.mark.parametrize("budget", [2, 10, 100, 1000])
def test_fashion_split_sizes_and_disjointness(fashion, budget):
    s = fashion.split(budget, seed=0)
    assert len(s.train_pairs) + len(s.val_pairs) == budget
    assert len(s.val_pairs) == (max(1, round(0.2 * budget)) if budget >= 5 else round(0.2 * budget))
    assert len(s.unpaired_a) == 5000
    assert len(s.test_pairs) == 0  # class-level captions: no instance retrieval
    assert_disjoint(fashion, a_sides(s), fashion.a.keys)
    paired_b = np.concatenate([s.train_pairs[:, 1], s.val_pairs[:, 1]])
    assert not set(s.unpaired_b) & set(paired_b)
    assert set(s.unpaired_b) | set(paired_b) == set(range(len(fashion.b)))
    assert (s.train_pairs[:, 0] < 60000).all() and (s.zero_shot.a_indices >= 60000).all()
    assert len(s.zero_shot.a_indices) == 500


def test_fashion_budget_10_has_validation_zero_shot(fashion):
    s = fashion.split(10, seed=3)
    assert len(s.val_pairs) == 2 and len(s.train_pairs) == 8
    zs = s.val_zero_shot
    assert np.array_equal(zs.a_indices, s.val_pairs[:, 0])
    assert np.array_equal(zs.labels, fashion.labels_a[s.val_pairs[:, 0]])
    assert zs.class_names == CLASS_NAMES and all(len(p) == 8 for p in zs.prompts)


def test_fashion_captions_name_the_image_class(fashion):
    s = fashion.split(300, seed=0)
    pairs = np.concatenate([s.train_pairs, s.val_pairs])
    captions = fashion.b.load(pairs[:, 1])
    for (a, _), caption in zip(pairs, captions):
        name = CLASS_NAMES[fashion.labels_a[a]]
        # Exact match: "shirt" is a substring of "a photo of a t-shirt."
        assert caption in {fill(t, name) for t in fashion.templates}
    assert "a photo of an ankle boot." in fashion.captions


def test_fashion_seeding(fashion):
    assert_seeding(fashion, 100)


def test_fashion_items_load(fashion):
    images = fashion.a.load([0, 60000])
    assert all(im.mode == "RGB" and im.size == (28, 28) for im in images)
    assert len(set(fashion.a.keys)) == len(fashion.a) == 70000
    assert fashion.b.keys[0].startswith("text:") and len(set(fashion.b.keys)) == 80


@pytest.mark.parametrize("budget", [1, 60001])
def test_fashion_budget_out_of_range(fashion, budget):
    with pytest.raises(GeraError, match="60000"):
        fashion.split(budget, seed=0)


def test_fashion_unpaired_request_too_large(fashion):
    with pytest.raises(GeraError, match="at most"):
        fashion.split(59000, seed=0, unpaired_a=5000)


# --- emoji -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def emoji():
    return get_task("emoji")


def test_emoji_universe(emoji):
    n_names = len(emoji.emoji_names)
    assert 1300 <= n_names <= 1450
    assert abs(len(emoji.held_out_names) - 0.25 * n_names) <= 2
    assert len(set(emoji.a.keys)) == len(emoji.a) == 3 * n_names + 12000
    assert len(set(emoji.b.keys)) == len(emoji.b)
    assert all(k.startswith("emoji:v1:") for k in emoji.a.keys)


@pytest.mark.parametrize("budget", [10, 100, 3000])
def test_emoji_split_sizes_and_disjointness(emoji, budget):
    s = emoji.split(budget, seed=0)
    assert len(s.train_pairs) + len(s.val_pairs) == budget
    assert (len(s.unpaired_a), len(s.unpaired_b), len(s.test_pairs)) == (3000, 6000, 1000)
    assert_disjoint(emoji, a_sides(s), emoji.a.keys)
    b_sides = {"train": s.train_pairs[:, 1], "val": s.val_pairs[:, 1],
               "unpaired": s.unpaired_b, "test": s.test_pairs[:, 1]}
    assert_disjoint(emoji, b_sides, emoji.b.keys)
    # Unpaired images and unpaired captions come from different specs: no hidden pairs.
    assert not set(s.unpaired_a) & set(s.unpaired_b)
    assert s.val_zero_shot is None and emoji.labels_a is None and emoji.val_metric == "retrieval"


def test_emoji_pools_show_held_out_names(emoji):
    s = emoji.split(100, seed=0)
    held_cp = {cp for cp, n in zip(emoji.code_points, emoji.emoji_names)
               if n in set(emoji.held_out_names)}
    shows = [any(cp in held_cp for cp, _, _ in emoji.specs[i].items) for i in s.unpaired_b]
    assert 0.2 < np.mean(shows) < 0.9


def _word_ngrams(text: str, max_n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9]+", text)
    return {tuple(words[i:i + n]) for n in range(1, max_n + 1) for i in range(len(words) - n + 1)}


def test_emoji_held_out_names_never_in_paired_captions(emoji):
    held = {tuple(re.findall(r"[a-z0-9]+", n)) for n in emoji.held_out_names}
    max_n = max(len(h) for h in held)
    # Every caption any split can pair (training, validation or test), as word sequences:
    # stricter than a substring test, and immune to "cat" ⊂ "catch".
    pairable = np.concatenate([emoji.candidates, emoji.test_idx])
    for i in pairable:
        found = _word_ngrams(emoji.captions[i], max_n) & held
        assert not found, (emoji.captions[i], found)


def test_emoji_zero_shot(emoji):
    zs = emoji.split(100, seed=0).zero_shot
    assert zs.class_names == emoji.held_out_names
    assert len(zs.a_indices) == 2 * len(zs.class_names) and len(zs.prompts[0]) == 5
    name_of = dict(zip(emoji.code_points, emoji.emoji_names))
    for i, label in zip(zs.a_indices[::37], zs.labels[::37]):
        (cp, _, _), = emoji.specs[i].items
        assert name_of[cp] == zs.class_names[label]


def test_emoji_renders_deterministic_and_not_blank(emoji):
    idx = [0, 1, 2, 5000, 9000, len(emoji.a) - 1]
    first = emoji.a.load(idx)
    fresh = Emoji(n_compositions=10)  # another renderer, cold caches
    for i, img in zip(idx, first):
        assert img.mode == "RGB" and img.size == (112, 112)
        redo = fresh.render(emoji.specs[i])
        assert np.array_equal(np.asarray(img), np.asarray(redo))
        assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > 10


def test_emoji_every_glyph_draws():
    renderer = EmojiRenderer()
    emoji_task = get_task("emoji")
    for cp in emoji_task.code_points[::7]:  # a blank glyph raises GeraError
        assert renderer.glyph(cp, 36).getchannel("A").getbbox() is not None


def test_emoji_seeding_and_budget(emoji):
    assert_seeding(emoji, 100)
    assert np.array_equal(emoji.split(100, 1).test_pairs, emoji.split(100, 2).test_pairs)
    with pytest.raises(GeraError, match=str(emoji.max_budget())):
        emoji.split(emoji.max_budget() + 1, seed=0)


# --- folder ------------------------------------------------------------------------------------

def make_folder(root: Path, n: int = 30, labels: bool = True, rows: list | None = None) -> Path:
    """A folder dataset of ``n`` distinct images; image 0 gets a second caption."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    if rows is None:
        rows = []
        for i in range(n):
            Image.new("RGB", (16 + i, 16), (i * 8, 255 - i * 8, 100)).save(root / f"img/{i}.png")
            rows.append([f"img/{i}.png", f"picture number {i}", ["even", "odd"][i % 2]])
        rows.append(["img/0.png", "the very first picture", "even"])
        if not labels:
            rows = [r[:2] for r in rows]
    with open(root / "captions.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "caption", "label"] if labels else ["image", "caption"])
        writer.writerows(rows)
    return root


def test_folder_good(tmp_path):
    task = get_task(f"folder:{make_folder(tmp_path)}")
    assert len(task.a) == 30 and len(task.b) == 31
    assert task.val_metric == "zero_shot" and task.class_names == ["even", "odd"]
    assert all(k.startswith("file:") for k in task.a.keys)
    for budget in (5, 10, task.max_budget() - 1):
        s = task.split(budget, seed=0)
        assert len(s.train_pairs) + len(s.val_pairs) == budget
        assert_disjoint(task, a_sides(s, zero_shot_apart=False), task.a.keys)
        assert set(s.zero_shot.a_indices) == set(s.test_pairs[:, 0])
        b_sides = {"train": s.train_pairs[:, 1], "val": s.val_pairs[:, 1],
                   "unpaired": s.unpaired_b, "test": s.test_pairs[:, 1]}
        assert_disjoint(task, b_sides, task.b.keys)
        assert np.array_equal(s.zero_shot.labels, task.labels_a[s.zero_shot.a_indices])
    assert_seeding(task, 10)
    img, = task.a.load([0])
    assert img.mode == "RGB"
    assert task.b.load([0])[0].startswith("picture number") or task.b.load([0])[0] == \
        "the very first picture"
    assert get_task(f"folder:{tmp_path}") is task  # memoised


def test_folder_without_labels_uses_retrieval(tmp_path):
    task = get_task(f"folder:{make_folder(tmp_path, labels=False)}")
    s = task.split(10, seed=0)
    assert task.val_metric == "retrieval" and s.zero_shot is None and task.labels_a is None
    assert len(s.test_pairs) > 0


def test_folder_same_bytes_is_one_item(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "img/copy.png").write_bytes((tmp_path / "img/1.png").read_bytes())
    with open(tmp_path / "captions.csv", "a", newline="") as fh:
        csv.writer(fh).writerow(["img/copy.png", "a copy of picture one", "odd"])
    task = get_task(f"folder:{tmp_path}")
    assert len(task.a) == 30 and len(task.b) == 32


def test_example_folder_asset():
    task = get_task(f"folder:{REPO / 'assets/example-folder'}")
    assert task.split(10, seed=0).zero_shot is not None


def folder_error(root: Path) -> str:
    with pytest.raises(GeraError) as err:
        get_task(f"folder:{root}")
    return str(err.value)


def test_folder_missing_csv(tmp_path):
    assert "captions.csv is missing" in folder_error(tmp_path)


def test_folder_missing_column(tmp_path):
    (tmp_path / "captions.csv").write_text("file,text\na.png,hello\n")
    msg = folder_error(tmp_path)
    assert "lacks the column(s) image, caption" in msg and "image,caption" in msg


def test_folder_malformed_csv(tmp_path):
    make_folder(tmp_path)
    with open(tmp_path / "captions.csv", "a") as fh:
        fh.write('img/1.png,"an unterminated caption\n')
    assert "not valid CSV" in folder_error(tmp_path)


def test_folder_wrong_field_count(tmp_path):
    make_folder(tmp_path)
    with open(tmp_path / "captions.csv", "a") as fh:
        fh.write("img/1.png,a caption, with a comma,odd\n")
    assert "4 fields, the header has 3" in folder_error(tmp_path)


def test_folder_empty_caption(tmp_path):
    make_folder(tmp_path)
    with open(tmp_path / "captions.csv", "a") as fh:
        fh.write("img/2.png,  ,even\n")
    msg = folder_error(tmp_path)
    assert "empty caption" in msg and "line 33" in msg and "Fix:" in msg


def test_folder_missing_and_corrupt_images(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "img/3.png").unlink()
    (tmp_path / "img/4.png").write_bytes(b"not an image at all")
    good = (tmp_path / "img/5.png").read_bytes()
    (tmp_path / "img/5.png").write_bytes(good[: len(good) // 2])
    msg = folder_error(tmp_path)
    assert "3 problem(s)" in msg
    assert "'img/3.png' is not found" in msg
    assert "'img/4.png' is not an image in a readable format" in msg
    assert "'img/5.png' is a damaged image" in msg


def test_folder_too_few_pairs(tmp_path):
    make_folder(tmp_path, n=3, labels=False)
    assert "needs at least 5" in folder_error(tmp_path)


def test_folder_budget_too_large(tmp_path):
    task = get_task(f"folder:{make_folder(tmp_path)}")
    with pytest.raises(GeraError, match=f"2 to {task.max_budget()}"):
        task.split(task.max_budget() + 1, seed=0)


# --- registry ----------------------------------------------------------------------------------

def test_registry():
    assert list_tasks() == ["fashion-mnist", "emoji", "spoken-words", "folder:<path>",
                            "snapshot:<file>"]
    assert get_task("fashion-mnist", n_test=500) is get_task("fashion-mnist", n_test=500)
    with pytest.raises(GeraError, match="fashion-mnist, emoji, spoken-words, folder:<path>"):
        get_task("cifar10")
    with pytest.raises(GeraError, match="apt-get install dataset-fashion-mnist"):
        get_task("fashion-mnist", data_dir="/nonexistent")
    with pytest.raises(GeraError, match="apt-get install fonts-noto-color-emoji"):
        get_task("emoji", font_path="/nonexistent.ttf")
