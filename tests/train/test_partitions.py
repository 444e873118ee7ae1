"""Partitions on the embedded default: computed once per K by the driver, named in the
run context, loaded by trials."""

import dataclasses

import pytest
import torch

from raysynth.context import split_of
from raysynth.losses import parse_loss
from raysynth.pool import pool_key
from raysynth.prepare import Plan, prepare
from raysynth.prepare.partitions import ensure_partition, partition_path
from raysynth.train.data import train_data


def _with(config, **partition):
    return dataclasses.replace(
        config, loss={"bound": {}}, partition=dataclasses.replace(config.partition, **partition)
    )


def test_prepare_computes_each_k_once_and_trials_load_it(ray_session, tiny_config):
    config = _with(tiny_config, space="features", niter=20)
    context = prepare(config, Plan(clusters=[1.0, 2.0]))
    split = split_of(config)
    key = pool_key(split.fingerprint, config.pool)
    assert list(context.pools.values()) == [key]  # the driver's key, which trials look up
    for m in (1.0, 2.0):
        k = dataclasses.replace(config.partition, clusters_per_class=m).num_clusters(split.num_classes)
        path = partition_path(config, split.fingerprint, key, k)
        assert path.is_file() and context.partitions[f"{key}/K={k}"] == str(path)
    data = train_data(config, context, parse_loss(config.loss))
    assert data.num_partitions == 10 and len(data.real_part) == len(data.real_labels)
    assert len(data.syn_part) == len(data.syn_images) and int(data.syn_part.max()) < 10
    # a second request is a file load, not a k-means
    _, computed = ensure_partition(config, context, key, data.real_images, data.syn_images, 10)
    assert not computed
    # a K the driver did not prepare is an error naming it, never a k-means in the trial
    three = dataclasses.replace(config, partition=dataclasses.replace(config.partition, clusters_per_class=3.0))
    with pytest.raises(FileNotFoundError, match=f"partition {key}/K=15 was not prepared"):
        train_data(three, context, parse_loss(three.loss))
    # pixel space is a different partition, cached under a different key
    pixels = _with(tiny_config, space="pixels", niter=20)
    assert partition_path(pixels, split.fingerprint, key, 10) != partition_path(config, split.fingerprint, key, 10)


def test_online_method_hands_the_loop_vectors_instead_of_regions(ray_session, tiny_config):
    config = _with(tiny_config, method="online", clusters_per_class=1.0)
    context = prepare(config)
    assert context.partitions == {}  # online: the loop clusters each batch
    data = train_data(config, context, parse_loss(config.loss))
    assert data.real_part is None and data.num_partitions == 5
    assert data.real_vectors.shape == (len(data.real_labels), 3 * 32 * 32)
    # the pool is read from its memory map, uint8; k-means sees its pixels in [0, 1]
    pixels = data.syn_images[:].float() / 255.0
    assert data.syn_images[:].dtype == torch.uint8 and len(data.syn_images) == len(data.syn_class)
    assert torch.equal(data.syn_vectors, pixels.reshape(len(pixels), -1))


def test_pixel_k_means_reads_images_at_partition_pixel_side(tiny_config):
    """partition.pixel_side: what pixel-space k-means clusters (the official code's 224 costs
    150,528 dimensions per image); a different side is a different cached partition."""
    from raysynth.train.partitions import pixel_vectors

    images = torch.rand(3, 3, 32, 32)
    assert pixel_vectors(images, 8).shape == (3, 3 * 8 * 8)
    assert pixel_vectors(images, 64).shape == (3, 3 * 32 * 32)  # never upsampled
    assert torch.allclose(pixel_vectors(images, 8)[0].view(3, 8, 8)[0, 0, 0], images[0, 0, :4, :4].mean())  # area-averaged
    other = dataclasses.replace(tiny_config, partition=dataclasses.replace(tiny_config.partition, pixel_side=16))
    assert partition_path(tiny_config, "split", "pool", 4) != partition_path(other, "split", "pool", 4)
