"""bench.sizes: size ladders, weight shapes, analytic parameter and FLOP counts, CNN geometry."""

import math

import pytest
from spec_cases import NON_TOKEN, PAIRS, ladder

import bench.registry
import bench.sizes
from bench.models.cnn.spec import cnn_geometry
from bench.registry import SpecError

# ---------------------------------------------------------------------------- counts


@pytest.mark.parametrize("family,dataset,batchnorm", [
    (f, d, bn) for f, d in PAIRS for bn in (False, True) if not (bn and f == "seq2seq")])
def test_param_count_is_sum_of_weight_shapes(family, dataset, batchnorm):
    for size in bench.sizes.SIZES[family]:
        shapes = bench.sizes.weight_shapes(family, size, dataset, batchnorm)
        names = [n for n, _ in shapes]
        assert len(names) == len(set(names)), f"duplicate weight names: {names}"
        assert all(all(d >= 1 for d in shape) for _, shape in shapes)
        assert bench.sizes.param_count(family, size, dataset, batchnorm) == sum(
            math.prod(shape) for _, shape in shapes)


@pytest.mark.parametrize("family,dataset", [(f, d) for f, d in PAIRS if f != "seq2seq"])
def test_batchnorm_adds_parameters(family, dataset):
    count = bench.sizes.param_count
    assert count(family, "s", dataset, True) > count(family, "s", dataset)


@pytest.mark.parametrize("family,dataset", PAIRS)
def test_sizes_grow_strictly(family, dataset):
    counts = [bench.sizes.param_count(family, s, dataset) for s in ladder(family)]
    assert counts == sorted(set(counts)), dict(zip(ladder(family), counts, strict=True))


@pytest.mark.parametrize("family,dataset", NON_TOKEN)
def test_sizes_span_three_orders_of_magnitude(family, dataset):
    lo = bench.sizes.param_count(family, ladder(family)[0], dataset)
    hi = bench.sizes.param_count(family, ladder(family)[-1], dataset)
    assert hi >= 1000 * lo, (lo, hi)


@pytest.mark.parametrize("family,dataset", PAIRS)
def test_flops_positive_and_growing(family, dataset):
    flops = [bench.sizes.flops_per_sample(family, s, dataset) for s in ladder(family)]
    assert all(isinstance(f, int) and f > 0 for f in flops)
    assert flops == sorted(set(flops)), dict(zip(ladder(family), flops, strict=True))
    assert bench.sizes.flops_per_sample(family, "article", dataset) > 0


def test_cnn_flops_match_hand_count_on_mnist():
    # conv1 26x26x9x1x32, conv2 11x11x9x32x64, dense 1600x128, head 128x10 multiply-adds.
    macs = 26 * 26 * 9 * 32 + 11 * 11 * 9 * 32 * 64 + 1600 * 128 + 128 * 10
    assert bench.sizes.flops_per_sample("cnn", "article", "mnist") == 2 * macs


def test_binary_datasets_use_one_output():
    for name, info in bench.registry.DATASETS.items():
        assert info.n_outputs == (1 if info.n_classes == 2 else info.n_classes), name


def test_size_of_rejects_unknown():
    with pytest.raises(SpecError, match="'huge'"):
        bench.sizes.size_of("cnn", "huge")
    with pytest.raises(SpecError, match="'resnet'"):
        bench.sizes.size_of("resnet", "xs")


# ---------------------------------------------------------------------------- cnn geometry


def test_cnn_geometry_same_for_digits_valid_for_mnist():
    pad, dims = cnn_geometry(bench.registry.DATASETS["digits"].shape)
    assert pad == "same"
    assert dims == [[8, 4, 4, 2], [8, 4, 4, 2]]
    pad, dims = cnn_geometry(bench.registry.DATASETS["mnist"].shape)
    assert pad == "valid"
    assert dims == [[26, 13, 11, 5], [26, 13, 11, 5]]


@pytest.mark.parametrize("dataset", sorted({d for f, d in NON_TOKEN if f == "cnn"}))
def test_cnn_geometry_never_collapses(dataset):
    _, dims = cnn_geometry(bench.registry.DATASETS[dataset].shape)
    assert all(d[3] >= 1 for d in dims)


