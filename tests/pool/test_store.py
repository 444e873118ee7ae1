import numpy as np

from raysynth.context import split_of
from raysynth.pool import PoolStore, pool_key
from raysynth.pool.pipeline import generate_pool


def test_pool_is_generated_once_then_cached(ray_session, tiny_config, tmp_path):
    store = PoolStore(tmp_path / "pools")
    split = split_of(tiny_config)
    key, generated = generate_pool(split, tiny_config.pool, store=store)
    assert generated and store.exists(key)
    pool = store.load(key)
    per_class = tiny_config.pool.per_class
    assert len(pool) == per_class * split.num_classes
    assert np.bincount(pool.manifest["target_class"]).tolist() == [per_class] * split.num_classes
    # Diff-Mix: every reference comes from another class
    assert (pool.manifest["reference_class"] != pool.manifest["target_class"]).all()
    mtime = (store.path(key) / "meta.json").stat().st_mtime_ns

    key2, generated2 = generate_pool(split, tiny_config.pool, store=store)
    assert key2 == key and not generated2
    assert (store.path(key) / "meta.json").stat().st_mtime_ns == mtime
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_pool_key_ignores_gamma_but_not_strength(tiny_config):
    fp = "split"
    base = pool_key(fp, tiny_config.pool)
    tiny_config.pool.gamma = 0.1
    assert pool_key(fp, tiny_config.pool) == base
    assert pool_key(fp, tiny_config.pool, strength=0.5) != base
    tiny_config.pool.quality = {}
    assert pool_key(fp, tiny_config.pool) != base


def test_same_config_gives_same_pool(ray_session, tiny_config, tmp_path):
    split = split_of(tiny_config)
    a, b = PoolStore(tmp_path / "a"), PoolStore(tmp_path / "b")
    key, _ = generate_pool(split, tiny_config.pool, store=a)
    generate_pool(split, tiny_config.pool, store=b)
    assert np.array_equal(a.load(key).images, b.load(key).images)


def test_per_image_strengths_are_drawn_from_the_set_and_each_image_uses_its_own(tiny_config, tmp_path):
    """Diff-Mix's randomised strength (pool.strengths): each image's s comes from the set,
    the generator translates it with its own s, and its soft label follows that s."""
    import dataclasses

    import torch

    from raysynth.generators.quality import quality_controlled_shots
    from raysynth.pool.labels import diffmix_soft_labels
    from raysynth.pool.shards import GenerateShards, ShardWork, plan_pool, to_uint8

    split = split_of(tiny_config)
    config = dataclasses.replace(tiny_config.pool, strengths=[0.3, 0.9], shard_size=1000)
    plan = plan_pool(split.train, split.num_classes, config, config.strength)
    assert set(plan["strength"]) == {0.3, 0.9}
    fixed = plan_pool(split.train, split.num_classes, tiny_config.pool, tiny_config.pool.strength)
    assert plan["reference_index"].tolist() == fixed["reference_index"].tolist()  # only the strengths differ
    assert pool_key(split.fingerprint, config) != pool_key(split.fingerprint, tiny_config.pool)

    learned = quality_controlled_shots(split.train, split.classes, config.quality)
    pools = {"p": ShardWork(plan, str(tmp_path))}
    shards = GenerateShards(pools, config, split.classes, split.metaclass, to_uint8(split.train.images), learned, None)
    shards({"pool": np.array(["p"]), "shard": np.array([0])})
    manifest = __import__("pandas").read_parquet(tmp_path / "shard-00000.parquet")
    images = np.load(tmp_path / "shard-00000.npy")
    assert manifest["strength"].tolist() == plan["strength"].tolist()
    generator = shards.generator  # the actor's own, already fitted
    for row in (int(np.argmax(plan["strength"] == 0.3)), int(np.argmax(plan["strength"] == 0.9))):
        r = plan.iloc[[row]]
        ref = torch.from_numpy(to_uint8(split.train.images)[r["reference_index"].to_numpy()]).float() / 255.0
        alone, _ = generator.translate(ref, torch.tensor(r["target_class"].to_numpy()), float(r["strength"].iloc[0]), torch.tensor(r["seed"].to_numpy()))
        assert np.array_equal(images[row], to_uint8(alone)[0])
    soft = diffmix_soft_labels(torch.tensor(manifest["target_class"]), torch.tensor(manifest["reference_class"]),
                               torch.tensor(manifest["strength"], dtype=torch.float32), 0.5, split.num_classes)
    target = soft[torch.arange(len(soft)), torch.tensor(manifest["target_class"])]
    assert torch.allclose(target[torch.tensor(manifest["strength"]) == 0.3], torch.tensor(0.3**0.5))
