import numpy as np

from raysynth.data import cached_split
from raysynth.pool import PoolStore, pool_key
from raysynth.pool.pipeline import generate_pool


def test_pool_is_generated_once_then_cached(ray_session, tiny_config, tmp_path):
    store = PoolStore(tmp_path / "pools")
    split = cached_split(tiny_config)
    key, generated = generate_pool(split, tiny_config.pool, store=store)
    assert generated and store.exists(key)
    pool = store.load(key)
    per_class = tiny_config.pool.per_class
    assert len(pool) == per_class * split.num_classes
    assert np.bincount(pool.manifest["target_class"]).tolist() == [per_class] * split.num_classes
    # Diff-Mix: every reference comes from another class
    assert (pool.manifest["reference_class"] != pool.manifest["target_class"]).all()
    mtime = (store.path(key) / "images.npy").stat().st_mtime_ns

    key2, generated2 = generate_pool(split, tiny_config.pool, store=store)
    assert key2 == key and not generated2
    assert (store.path(key) / "images.npy").stat().st_mtime_ns == mtime
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
    split = cached_split(tiny_config)
    a, b = PoolStore(tmp_path / "a"), PoolStore(tmp_path / "b")
    key, _ = generate_pool(split, tiny_config.pool, store=a)
    generate_pool(split, tiny_config.pool, store=b)
    assert np.array_equal(a.load(key).images, b.load(key).images)
