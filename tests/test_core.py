"""Geometry, losses, training and baselines on small synthetic data (no encoders needed)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gera.alignments import LinearAlignment, RelativeAlignment, Standardizer
from gera.heads import HeadAlignment
from gera.checkpoint import load_alignment, save_alignment
from gera.errors import GeraError
from gera.evaluate import knn_jaccard, retrieval, zero_shot
from gera.geometry import KERNELS, knn
from gera.objectives import NeighbourGraph, Side
from gera.losses import (JensenShannonRows, diffusion_operator, geometric_loss, info_nce,
                         kernel_matrix, similarity_walks, structure_loss)
from gera.methods import ASIF, CCA, Contrastive, GeRA, Pairs, Procrustes, Structure, Unpaired
from gera.settings import TrainConfig


def unit(x):
    return F.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)


def neighbourhoods(seed=0, m=16, k=10, d=32):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(m, 1, d, generator=g)
    return unit(centres + 0.3 * torch.randn(m, k + 1, d, generator=g))


@pytest.mark.parametrize("kernel", KERNELS)
def test_diffusion_rows_sum_to_one(kernel):
    t = diffusion_operator(kernel_matrix(neighbourhoods(), kernel, eps=0.5))
    assert torch.allclose(t.sum(-1), torch.ones(t.shape[:-1]), atol=1e-5)
    assert (t >= 0).all()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("divergence", ["frobenius", "kl"])
def test_geometric_loss_invariances(kernel, divergence):
    x = neighbourhoods()
    rotation, _ = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(1)))
    loss = lambda z: geometric_loss(x, z, kernel, eps=0.5, divergence=divergence).item()
    assert loss(x) == pytest.approx(0, abs=1e-6)  # identity
    assert loss(unit(x @ rotation)) == pytest.approx(0, abs=1e-5)  # rotation
    assert loss(unit(3.7 * x)) == pytest.approx(0, abs=1e-6)  # uniform scaling (normalised away)
    distortion = torch.diag(torch.linspace(0.05, 3.0, 32))
    assert loss(unit(x @ distortion)) > 1e-6 + 100 * loss(unit(x @ rotation))


def test_geometric_loss_sees_a_global_shrink():
    # One eps from the original space for both operators: shrinking everything towards one
    # point must cost something (a per-batch eps would make this loss 0).
    x = neighbourhoods()
    shrunk = unit(x * 0.05 + torch.ones(32))
    assert geometric_loss(x, shrunk, "heat", eps=0.5).item() > 0.01


def test_geometric_loss_gradient_flows_to_aligned_only():
    x = neighbourhoods().requires_grad_(True)
    z = unit(neighbourhoods(seed=2)).requires_grad_(True)
    geometric_loss(x, z, "heat", eps=0.5).backward()
    assert x.grad is None and z.grad is not None and z.grad.abs().sum() > 0


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_structure_loss_invariances_and_gradient(levels):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 32, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(32, 32, generator=g))
    loss = lambda z: structure_loss(x, z, levels).item()
    assert loss(x) == pytest.approx(0, abs=1e-6)  # identity
    assert loss(x @ rotation) == pytest.approx(0, abs=1e-5)  # the same similarities
    assert loss(3.7 * x) == pytest.approx(0, abs=1e-6)  # rows are normalised first
    distortion = torch.diag(torch.linspace(0.05, 3.0, 32))
    assert loss(x @ distortion) > 1e-6 + 100 * loss(x @ rotation)
    frozen, z = x.clone().requires_grad_(True), unit(torch.randn(64, 32, generator=g)).requires_grad_(True)
    structure_loss(frozen, z, levels).backward()
    assert frozen.grad is None and z.grad is not None and z.grad.abs().sum() > 0


def textbook_js_rows(p, q):
    m = 0.5 * (p + q)
    kl = lambda a: (a * (a.clamp_min(1e-30).log() - m.clamp_min(1e-30).log())).sum(-1)
    return 0.5 * (kl(p) + kl(q))


def test_jensen_shannon_rows_match_autograd_through_the_textbook_formula():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(40, 8, dtype=torch.float64, generator=g)
    p = similarity_walks(x, 0.05, 2)[1]
    z = torch.randn(40, 8, dtype=torch.float64, generator=g)
    # rows far apart, a few nearly equal, and one underflowing entry
    smooth = similarity_walks(torch.cat([z[:30], x[30:] + 1e-3 * z[30:]]), 0.05, 1)[0]
    q = smooth.clone()
    q[0, 5] = 0.0
    weights = torch.rand(40, dtype=torch.float64, generator=g)
    mine, ref = q.clone().requires_grad_(True), q.clone().requires_grad_(True)
    rows = JensenShannonRows.apply(p, mine)[0]
    (weights * rows).sum().backward()
    (weights * textbook_js_rows(p, ref)).sum().backward()
    assert torch.allclose(rows, textbook_js_rows(p, q), rtol=1e-12, atol=1e-15)
    underflow = torch.zeros_like(q, dtype=torch.bool)
    underflow[0, 5] = True
    assert torch.allclose(mine.grad[~underflow], ref.grad[~underflow], rtol=1e-9, atol=1e-12)
    # where q underflowed to 0 the true gradient is −∞; both give a finite push upwards (the
    # textbook's clamp drops the q · d log q / dq = 1 there, so they differ by ½ · weight)
    assert torch.isfinite(mine.grad).all() and mine.grad[0, 5] < -10 and ref.grad[0, 5] < -10
    # stacked training vmaps the loss: the same rows and gradients per run
    qs = torch.stack([smooth, smooth.flip(0)]).requires_grad_(True)
    # (the frozen walks are every run's: not vmapped)
    torch.func.vmap(lambda a, b: JensenShannonRows.apply(a, b)[0], in_dims=(None, 0))(
        p, qs).sum().backward()
    for run, q_run in enumerate((smooth, smooth.flip(0))):
        ref = q_run.clone().requires_grad_(True)
        textbook_js_rows(p, ref).sum().backward()
        assert torch.allclose(qs.grad[run], ref.grad, rtol=1e-9, atol=1e-12)


def test_structure_warms_up_and_fits_like_the_other_trained_methods():
    pairs, unpaired, (ta, tb, _) = synthetic_world()
    objective = Structure(TrainConfig(**FAST), warmup_steps=20).objective()
    objective.prepare(unpaired.a[:100], unpaired.b[:100], "cpu", seed=0)
    rows = torch.arange(10)
    batch = objective.sample(rows, rows)
    assert objective.steps == 1 and len(batch.pool_a) == len(batch.pool_b) == 100
    alignment = Structure(TrainConfig(**FAST), seed=0).fit(pairs, unpaired)
    assert {"con", "structure"} <= set(alignment.history[-1])
    assert alignment.steps_run == FAST["max_steps"]
    r = retrieval(alignment, ta, tb)
    assert r["recall@10_a2b"] > 0.1 and r["recall@10_b2a"] > 0.1  # chance: 0.033


def test_info_nce_symmetric_and_lowest_for_true_pairs():
    g = torch.Generator().manual_seed(0)
    za, zb = unit(torch.randn(32, 16, generator=g)), unit(torch.randn(32, 16, generator=g))
    scale = torch.tensor(np.log(1 / 0.07))
    assert info_nce(za, zb, scale).item() == pytest.approx(info_nce(zb, za, scale).item(), rel=1e-6)
    perfect = info_nce(za, za, scale).item()
    shuffled = info_nce(za, za[torch.randperm(32, generator=g)], scale).item()
    assert perfect < shuffled and perfect < info_nce(za, zb, scale).item()


def test_multi_positive_info_nce():
    g = torch.Generator().manual_seed(0)
    za, zb = unit(torch.randn(6, 8, generator=g)), unit(torch.randn(6, 8, generator=g))
    scale = torch.tensor(np.log(1 / 0.07))
    diagonal = torch.eye(6, dtype=torch.bool)
    plain = info_nce(za, zb, scale).item()
    assert info_nce(za, zb, scale, positives=diagonal).item() == pytest.approx(plain, rel=1e-6)
    # Two clips (rows 0, 1 of za) of one transcript: the text is the same row twice in zb.
    zb[1] = zb[0]
    both = diagonal.clone()
    both[0, 1] = both[1, 0] = True
    plain, multi = info_nce(za, zb, scale).item(), info_nce(za, zb, scale, positives=both).item()
    # The text's two rows no longer ask for one clip each, but for either: a lower loss.
    assert multi < plain - 1e-3


def test_multi_positive_reaches_training():
    pairs, unpaired, _ = synthetic_world()
    repeated = Pairs(pairs.a, np.repeat(pairs.b[::3], 3, axis=0)[:len(pairs.b)])  # texts ×3
    fits = [Contrastive(TrainConfig(**FAST, multi_positive=flag), seed=0).fit(repeated, unpaired)
            for flag in (False, True)]
    assert not np.allclose(fits[0].embed_b(repeated.b[:5]), fits[1].embed_b(repeated.b[:5]))


def test_retrieval_ranks_distinct_items():
    class Identity:
        embed_a = embed_b = staticmethod(lambda x: np.asarray(x, np.float32))

    # Three recordings; the last two say one transcript, so B holds that text twice.
    a = np.array([[0.2, 0.9], [0.0, 1.0], [0.0, 1.0]])
    b = np.array([[0.6, 0.8], [0.0, 1.0], [0.0, 1.0]])
    r = retrieval(Identity(), a, b, a_ids=np.array([0, 1, 2]), b_ids=np.array([7, 8, 8]),
                  ks=(1, 2))
    # a2b: recording 0 ranks its text second of the 2 DISTINCT texts (the repeated one is one
    # candidate, not two); b2a: 2 distinct texts query, each right.
    assert r["recall@1_a2b"] == pytest.approx(2 / 3) and r["recall@2_a2b"] == 1.0
    assert r["recall@1_b2a"] == 1.0


def test_validation_score_with_repeated_items():
    from gera.data.base import Split
    from gera.experiment import validation_score

    class Embedded:  # raw embeddings by item index, as EmbeddedTask serves them
        a = staticmethod(lambda idx: np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])[idx])
        b = staticmethod(lambda idx: np.array([[1.0, 0.0], [0.0, 1.0]])[idx])

    class Identity:
        embed_a = embed_b = staticmethod(lambda x: np.asarray(x, np.float32))

    # Recordings 0 and 1 say transcript 0, recording 2 says transcript 1: 3 × 2 distinct items.
    none = np.zeros((0, 2), np.int64)
    split = Split(train_pairs=none, val_pairs=np.array([[0, 0], [1, 0], [2, 1]]),
                  unpaired_a=np.zeros(0, np.int64), unpaired_b=np.zeros(0, np.int64),
                  test_pairs=none)
    assert validation_score(Embedded(), split, "retrieval")(Identity()) == pytest.approx(1.0)


def test_knn_excludes_self_and_finds_nearest():
    x = np.array([[1, 0], [0.99, 0.1], [0, 1], [-1, 0]], np.float32)
    idx, sims = knn(x, 2)
    assert idx[0, 0] == 1 and idx[2].tolist()[0] in (1, 0)
    assert all(i not in row for i, row in enumerate(idx))
    assert (np.diff(sims, axis=1) <= 1e-6).all()


def test_side_runs_the_head_once_per_unique_point():
    head = torch.nn.Linear(8, 4)
    side = Side(np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32), head, "cpu")
    groups = [torch.tensor([3, 4, 3]), torch.tensor([[1, 3, 7], [7, 8, 9]])]
    out = side.embed(*groups)
    assert side.points_run == 6  # 1, 3, 4, 7, 8, 9: each unique point once
    for g, o in zip(groups, out):
        assert torch.allclose(o, head(side.original[g]), atol=1e-6)
    small = Side(np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32), head, "cpu")
    (out,) = small.embed(torch.tensor([0, 1, 2, 3, 1]))
    assert small.points_run == 4
    assert torch.allclose(out, head(small.original[[0, 1, 2, 3, 1]]), atol=1e-6)


# --- a synthetic two-modality world: clusters in a latent space, two different "encoders" ------
def synthetic_world(seed=0, n_pairs=60, n_unpaired=1500, n_test=300, classes=6):
    rng = np.random.default_rng(seed)
    d = 12
    centres = rng.normal(size=(classes, d)) * 2.5
    wa, wb = rng.normal(size=(d, 64)), rng.normal(size=(d, 48))

    def draw(n):
        y = rng.integers(classes, size=n)
        z = centres[y] + rng.normal(size=(n, d))
        return np.maximum(z @ wa, 0).astype(np.float32), np.tanh(z @ wb / 4).astype(np.float32), y

    pa, pb, _ = draw(n_pairs)
    ua, _, _ = draw(n_unpaired)
    _, ub, _ = draw(n_unpaired)
    ta, tb, ty = draw(n_test)
    return Pairs(pa, pb), Unpaired(ua, ub), (ta, tb, ty)


FAST = dict(max_steps=150, eval_every=10)


@pytest.mark.slow
def test_training_is_deterministic_per_seed():
    pairs, unpaired, _ = synthetic_world()
    runs = [GeRA(TrainConfig(**FAST), seed=s).fit(pairs, unpaired) for s in (0, 0, 1)]
    za = [r.embed_a(pairs.a[:5]) for r in runs]
    # Equal up to float reordering in multi-threaded CPU kernels; another seed differs for real.
    assert np.allclose(za[0], za[1], atol=1e-5) and not np.allclose(za[0], za[2], atol=1e-2)


def test_early_stopping_keeps_the_best_validation_state():
    pairs, unpaired, (ta, tb, _) = synthetic_world()
    scores = []

    def validate(alignment):
        scores.append(retrieval(alignment, ta[:50], tb[:50])["recall@1_a2b"])
        return scores[-1]

    method = GeRA(TrainConfig(max_steps=400, eval_every=10, patience=3))
    alignment = method.fit(pairs, unpaired, validate=validate)
    assert max(row["val"] for row in alignment.history) == max(scores)
    assert alignment.steps_run < 400, "patience 3 never stopped the run early"
    assert alignment.best_step % 10 == 0
    best = next(row for row in alignment.history if row["step"] == alignment.best_step)
    assert best["val"] == max(scores)
    assert retrieval(alignment, ta[:50], tb[:50])["recall@1_a2b"] == pytest.approx(max(scores))


def test_reduced_matmul_precision_reaches_the_steps_and_only_them():
    # "medium" is torch's process-wide setting: on during every training step (forward and
    # backward), the process's own setting back afterwards — also after a failed run — and
    # validation scored at full precision. The model trained that way still aligns.
    pairs, unpaired, (ta, tb, _) = synthetic_world()
    seen = {"step": set(), "backward": set(), "validate": set()}
    objective_loss = GeRA().objective().__class__.loss

    def loss(self, *args):
        seen["step"].add(torch.get_float32_matmul_precision())
        out = objective_loss(self, *args)
        out[0].register_hook(lambda grad: seen["backward"].add(torch.get_float32_matmul_precision()))
        return out

    def validate(alignment):
        seen["validate"].add(torch.get_float32_matmul_precision())
        return retrieval(alignment, ta[:50], tb[:50])["recall@1_a2b"]

    cfg = TrainConfig(matmul_precision="medium", **FAST)
    method = GeRA(cfg)
    objective = method.objective()
    objective.loss = loss.__get__(objective)
    from gera.train import train

    result = train(pairs.a, pairs.b, unpaired.a, unpaired.b, objective, cfg, validate=validate)
    assert seen == {"step": {"medium"}, "backward": {"medium"}, "validate": {"highest"}}
    assert torch.get_float32_matmul_precision() == "highest"
    assert retrieval(result.alignment, ta, tb)["recall@10_a2b"] > 0.15
    with pytest.raises(GeraError, match="loss became"):
        GeRA(TrainConfig(max_steps=50, lr=1e30, temperature=1e-30,
                         matmul_precision="medium")).fit(pairs, unpaired)
    assert torch.get_float32_matmul_precision() == "highest"


def test_overlapping_trainings_give_the_process_its_precision_back():
    # Two app users' jobs in threads: the first to finish must not strand the other, nor the
    # last leave the process at "medium". "highest" leaves the process's own setting alone.
    import threading

    from gera.device import matmul_precision

    inside, release = threading.Event(), threading.Event()

    def first():
        with matmul_precision("medium"):
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait(10)
    with matmul_precision("medium"):
        release.set()
        thread.join()
        assert torch.get_float32_matmul_precision() == "medium"
    assert torch.get_float32_matmul_precision() == "highest"
    torch.set_float32_matmul_precision("high")
    try:
        with matmul_precision("highest"):
            assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision("highest")


def test_alpha_zero_is_contrastive_only():
    pairs, unpaired, _ = synthetic_world()
    a = GeRA(TrainConfig(alpha=0.0, **FAST)).fit(pairs, unpaired)
    b = Contrastive(TrainConfig(**FAST)).fit(pairs, unpaired)
    assert np.allclose(a.embed_a(pairs.a), b.embed_a(pairs.a), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["heat", "inverse"])
def test_large_alpha_does_not_collapse(kernel):
    pairs, unpaired, (ta, tb, ty) = synthetic_world()
    alignment = GeRA(TrainConfig(alpha=100.0, kernel=kernel, max_steps=300)).fit(pairs, unpaired)
    z = alignment.embed_a(ta)
    cos = z @ z.T
    mean_cos = (cos.sum() - len(z)) / (len(z) * (len(z) - 1))
    assert mean_cos < 0.6, f"aligned test points collapsed (mean cosine {mean_cos:.3f})"
    # classes stay apart: a 5-NN vote in the aligned space recovers the latent class
    nbrs, _ = knn(z, 5)
    vote = np.array([np.bincount(ty[n], minlength=6).argmax() for n in nbrs])
    assert (vote == ty).mean() > 0.8
    # ...and the alignment still aligns (well above chance 1/300)
    assert retrieval(alignment, ta, tb)["recall@10_a2b"] > 0.15


@pytest.mark.slow
def test_gera_preserves_neighbourhoods_better_than_contrastive():
    pairs, unpaired, (ta, tb, _) = synthetic_world()
    cfg = TrainConfig(max_steps=300)
    orig = Standardizer.fit(ta)(ta)
    gera = knn_jaccard(orig, GeRA(cfg, alpha=10.0).fit(pairs, unpaired).embed_a(ta)).mean()
    con = knn_jaccard(orig, Contrastive(cfg).fit(pairs, unpaired).embed_a(ta)).mean()
    assert gera > con + 0.1


@pytest.mark.slow
def test_quality_floor_on_synthetic_world():
    pairs, unpaired, (ta, tb, ty) = synthetic_world()
    for method in (GeRA(TrainConfig(max_steps=300)), Procrustes(), CCA()):
        r = retrieval(method.fit(pairs, unpaired), ta, tb)
        assert r["recall@10_a2b"] > 0.1 and r["recall@10_b2a"] > 0.1, method  # chance: 0.033


def test_procrustes_recovers_a_planted_rotation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 20)).astype(np.float32)
    rotation, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    y = (x @ rotation).astype(np.float32)
    alignment = Procrustes(dim=20).fit(Pairs(x[:100], y[:100]), Unpaired(x[100:], y[100:]))
    za, zb = alignment.embed_a(x[150:]), alignment.embed_b(y[150:])
    assert np.allclose((za * zb).sum(1), 1.0, atol=1e-4)
    assert retrieval(alignment, x[150:], y[150:])["recall@1_a2b"] == 1.0


def test_asif_matches_brute_force():
    rng = np.random.default_rng(0)
    pa, pb = rng.normal(size=(30, 8)).astype(np.float32), rng.normal(size=(30, 6)).astype(np.float32)
    qa = rng.normal(size=(5, 8)).astype(np.float32)
    k, p = 7, 3.0
    alignment = ASIF(k=k, p=p).fit(Pairs(pa, pb), Unpaired(pa[:0], pb[:0]))
    mean = pa.mean(0)
    unit_np = lambda v: v / np.linalg.norm(v)
    anchors = np.stack([unit_np(r - mean) for r in pa])
    for q, got in zip(qa, alignment.embed_a(qa)):
        sims = anchors @ unit_np(q - mean)
        keep = np.zeros_like(sims)
        top = sorted(range(len(sims)), key=lambda i: -sims[i])[:k]
        for i in top:
            keep[i] = max(sims[i], 0.0) ** p
        assert np.allclose(got, unit_np(keep), atol=1e-5)


def test_zero_shot_and_retrieval_metrics_on_a_perfect_alignment():
    x = np.eye(6, dtype=np.float32) + 0.01
    ident = LinearAlignment(Standardizer(np.zeros(6)), Standardizer(np.zeros(6)), np.zeros(6),
                            np.zeros(6), np.eye(6), np.eye(6), "identity")
    r = retrieval(ident, x, x)
    assert r["recall@1_a2b"] == 1.0 and r["recall@1_b2a"] == 1.0
    prompts = x[:, None, :].repeat(2, 1)
    zs = zero_shot(ident, x, np.arange(6), prompts)
    assert zs["zero_shot_top1"] == 1.0 and zs["zero_shot_top5"] == 1.0
    # duplicates: two identical captions are not a miss
    dup = retrieval(ident, x[[0, 0]], x[[0, 0]], b_ids=np.array([7, 7]), a_ids=np.array([1, 1]))
    assert dup["recall@1_a2b"] == 1.0


def test_checkpoints_round_trip_every_alignment_kind(tmp_path):
    pairs, unpaired, (ta, tb, _) = synthetic_world()
    fitted = [GeRA(TrainConfig(max_steps=20, head="mlp")).fit(pairs, unpaired),
              GeRA(TrainConfig(max_steps=20, head="linear")).fit(pairs, unpaired),
              Procrustes().fit(pairs, unpaired), CCA().fit(pairs, unpaired),
              ASIF().fit(pairs, unpaired)]
    for i, alignment in enumerate(fitted):
        save_alignment(alignment, tmp_path / f"ckpt{i}", meta={"task": "synthetic"})
        loaded, meta = load_alignment(tmp_path / f"ckpt{i}.json")
        assert meta == {"task": "synthetic"} and type(loaded) is type(alignment)
        assert np.allclose(loaded.embed_a(ta), alignment.embed_a(ta), atol=1e-6)
        assert np.allclose(loaded.embed_b(tb), alignment.embed_b(tb), atol=1e-6)
    assert not list(tmp_path.glob(".tmp-*"))


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(GeraError, match="missing"):
        load_alignment(tmp_path / "nothing")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    (tmp_path / "junk.json").write_text('{"format": "gera-alignment/1", "kind": "heads"}')
    with pytest.raises(GeraError, match="corrupt"):
        load_alignment(tmp_path / "junk")


def test_nan_embeddings_are_refused_before_training():
    pairs, unpaired, _ = synthetic_world()
    bad = Pairs(pairs.a.copy(), pairs.b)
    bad.a[0, 0] = np.nan
    with pytest.raises(GeraError, match="1 paired A embedding"):
        GeRA(TrainConfig(max_steps=5)).fit(bad, unpaired)


def test_a_diverging_loss_is_a_clear_error():
    pairs, unpaired, _ = synthetic_world()
    with pytest.raises(GeraError, match="loss became"):
        GeRA(TrainConfig(max_steps=50, lr=1e30, temperature=1e-30)).fit(pairs, unpaired)


def test_unknown_training_option_is_named():
    with pytest.raises(GeraError, match="alpah"):
        GeRA(alpah=3)


@pytest.mark.parametrize("option, value", [("alpha", -1.0), ("eval_every", 0), ("temperature", 0.0),
                                           ("kernel", "gaussian"), ("head", "transformer"),
                                           ("matmul_precision", "bf16")])
def test_bad_training_values_are_refused_when_built(option, value):
    with pytest.raises(GeraError, match=option):
        GeRA(**{option: value})
    with pytest.raises(GeraError, match=option):
        TrainConfig(**{option: value})


def test_methods_are_estimators_with_explicit_parameters():
    asif = ASIF(k=50)
    assert asif.get_params() == {"k": 50, "p": 8.0, "seed": 0}
    assert asif.clone(p=4).get_params() == {"k": 50, "p": 4, "seed": 0}
    with pytest.raises(GeraError, match="no parameter"):
        ASIF.create(kk=3)
    gera = GeRA(TrainConfig(max_steps=10), seed=3, alpha=5.0)
    assert gera.get_params()["config"].alpha == 5.0 and gera.clone(alpha=1.0).config.alpha == 1.0
    assert gera.clone(alpha=1.0).config.max_steps == 10 and gera.clone().seed == 3
    with pytest.raises(GeraError, match="alpha is always 0"):
        Contrastive(alpha=1.0)


def test_neighbour_graph_samples_from_the_pool_nearest():
    x = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    graph = NeighbourGraph(x, k=5, k_pool=20)
    anchors = torch.arange(10)
    nb = graph.sample(anchors, torch.Generator().manual_seed(0))
    assert nb.shape == (10, 6) and (nb[:, 0] == anchors).all()
    for row in nb.numpy():
        assert set(row[1:]) <= set(graph.neighbours[row[0]].tolist())
    assert graph.eps > 0


def test_a_collapsed_embedding_ranks_last_not_first():
    class Collapsed(LinearAlignment):
        def embed_a(self, x):
            return np.zeros((len(x), 4), np.float32)

        embed_b = embed_a

    collapsed = Collapsed(Standardizer(np.zeros(3)), Standardizer(np.zeros(3)), np.zeros(3),
                          np.zeros(3), np.eye(3), np.eye(3), "collapsed")
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    r = retrieval(collapsed, x, x)
    assert r["recall@1_a2b"] == 0.0 and r["recall@10_b2a"] == 0.0
    zs = zero_shot(collapsed, x, np.arange(20) % 6, x[:6, None, :])
    assert zs["zero_shot_top1"] == 0.0


def test_repeated_pool_items_do_not_shrink_the_bandwidth():
    from gera.train import pool_rows

    x = np.random.default_rng(0).normal(size=(30, 16)).astype(np.float32)
    _, pool, rows = pool_rows(np.repeat(x[:10], 8, axis=0), x[10:], center=True)
    assert len(pool) == 30 and len(rows) == 80
    assert np.allclose(pool[rows], Standardizer.fit(np.concatenate([np.repeat(x[:10], 8, 0), x[10:]]))(np.repeat(x[:10], 8, 0)), atol=1e-6)
    assert NeighbourGraph(pool, k=5).eps > 0.1


def test_asif_query_with_no_positive_similarity_is_zero_and_ranks_last():
    anchors = np.eye(4, dtype=np.float32)
    alignment = RelativeAlignment(Standardizer(np.zeros(4)), Standardizer(np.zeros(4)), anchors,
                                  anchors, k=4, p=16)
    z = alignment.embed_a(-np.ones((1, 4), np.float32))
    assert np.all(z == 0)
    ok = alignment.embed_a(np.array([[1e-3, 0, 0, 0]], np.float32))  # p=16 must not underflow
    assert np.isclose(np.linalg.norm(ok), 1.0)


def test_every_search_starts_with_distinct_settings_on_its_ladders():
    for cls in (GeRA, Contrastive, Procrustes, ASIF, CCA):
        for n, da, db in ((4, 1280, 384), (80, 1280, 384), (3000, 96, 384)):
            space = cls.search_space(n, da, db)
            start = [space.complete(s) for s in space.start]
            assert len(start) == len({tuple(sorted(g.items())) for g in start}) >= 1
            assert all(start[0].keys() == s.keys() for s in start)
            for setting in start:
                cls.create(**setting)  # every start setting is a valid method
    assert Procrustes.search_space(3000, 96, 384).start[0] == {"dim": 96}


PROBE_THREADS = """
import threading, torch
from threadpoolctl import threadpool_limits
from gera.device import cpu_threads

def count_in_new_thread():
    seen = []
    probe = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    probe.start(); probe.join()
    return seen[0]

before = count_in_new_thread()
def job():
    with threadpool_limits(1):
        with cpu_threads(1):
            assert torch.get_num_threads() == 1
        # still inside the limits: the seed's evaluation and next fits stay on one thread
        assert torch.get_num_threads() == 1, torch.get_num_threads()
        done.append(True)
done = []
worker = threading.Thread(target=job)
worker.start(); worker.join()
assert done, "the job's own checks failed"
print(before, count_in_new_thread())
"""


def test_a_training_inside_thread_limits_leaves_later_threads_their_thread_count():
    # The app trains in a worker thread under threadpool_limits(1) (a comparison's seed): the
    # queries and jobs after it must not inherit its single thread. A fresh process, because a
    # torch.set_num_threads anywhere earlier (another test) hides what this one checks.
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # a count of 1 left behind then shows
    out = subprocess.run([sys.executable, "-c", PROBE_THREADS], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["2", "2"], f"threads before / after a limited training: {out}"
